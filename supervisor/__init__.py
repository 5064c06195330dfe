"""Stack Supervisor: a sidecar that makes updating a Docker Compose stack safe.

It pins image digests, verifies signatures before anything changes, snapshots
the databases, runs migrations, recreates services and rolls images *and data*
back when the new version does not become healthy.
"""

__version__ = "0.1.0"
