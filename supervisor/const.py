"""Names shared across the package: labels, roles, naming conventions."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

# Compose writes these on every container it creates (v1 and v2 alike).
COMPOSE_PROJECT_LABEL = "com.docker.compose.project"
COMPOSE_SERVICE_LABEL = "com.docker.compose.service"
COMPOSE_ONEOFF_LABEL = "com.docker.compose.oneoff"
COMPOSE_DEPENDS_ON_LABEL = "com.docker.compose.depends_on"  # Compose v2 only
COMPOSE_IMAGE_LABEL = "com.docker.compose.image"  # Compose v2: the image id

# Our own labels.
ROLE_LABEL = "supervisor.role"
RUN_LABEL = "supervisor.run"  # the run that created this container
JOB_LABEL = "supervisor.job"  # one-shot containers: what they were for

# A container kept for rollback is renamed <name>.old-<run id>.
RETAINED_SUFFIX = ".old-"
# A start-first run starts the new container next to the old one as <name>-next-<run id>.
NEXT_SUFFIX = "-next-"


def next_name(name: str, run_id: str) -> str:
    """Where a start-first run starts the new container, next to ``name``."""
    return f"{name}{NEXT_SUFFIX}{run_id}"


class Role(StrEnum):
    """What a managed service is, which decides how an update treats it."""

    APP = "app"
    MIGRATIONS = "migrations"
    POSTGRES = "postgres"
    INFLUXDB = "influxdb"


def is_next_container(name: str, labels: Mapping[str, str]) -> bool:
    """A start-first run's new container, not promoted yet: not (yet) the service's."""
    run_id = labels.get(RUN_LABEL)
    return bool(run_id) and name.endswith(f"{NEXT_SUFFIX}{run_id}")
