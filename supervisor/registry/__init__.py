"""The OCI registry adapter: the only package that speaks the distribution API.

::

    protocol.py     RegistryClient (what the domain depends on), Manifest, media types
    client.py       DistributionClient: resolve_digest, list_tags, get_manifest,
                    get_blob, get_referrers (aiohttp)
    transport.py    one authenticated, retried request (tenacity)
    auth.py         Bearer token flow and Basic auth, token cache
    credentials.py  CredentialStore from a Docker config.json plus the settings
    endpoints.py    reference host → URL dialled (mirrors, insecure and loopback hosts)
    responses.py    Link: rel="next" pagination, JSON bodies, media types
    errors.py       HTTP answers and aiohttp failures → supervisor.exceptions
"""

from supervisor.registry.auth import Authenticator
from supervisor.registry.client import DistributionClient
from supervisor.registry.credentials import Credentials, CredentialStore
from supervisor.registry.endpoints import Endpoint, EndpointMap
from supervisor.registry.protocol import (
    DEFAULT_MAX_BLOB_BYTES,
    INDEX_MEDIA_TYPES,
    MANIFEST_MEDIA_TYPES,
    MEDIA_DOCKER_MANIFEST,
    MEDIA_DOCKER_MANIFEST_LIST,
    MEDIA_OCI_INDEX,
    MEDIA_OCI_MANIFEST,
    Manifest,
    RegistryClient,
    compute_digest,
)
from supervisor.registry.transport import RetryPolicy

__all__ = [
    "DEFAULT_MAX_BLOB_BYTES",
    "INDEX_MEDIA_TYPES",
    "MANIFEST_MEDIA_TYPES",
    "MEDIA_DOCKER_MANIFEST",
    "MEDIA_DOCKER_MANIFEST_LIST",
    "MEDIA_OCI_INDEX",
    "MEDIA_OCI_MANIFEST",
    "Authenticator",
    "CredentialStore",
    "Credentials",
    "DistributionClient",
    "Endpoint",
    "EndpointMap",
    "Manifest",
    "RegistryClient",
    "RetryPolicy",
    "compute_digest",
]
