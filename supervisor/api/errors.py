"""Which HTTP answer an error becomes, and the one JSON error envelope (used by ``middleware.py``).

Only the API's own refusals (:class:`~supervisor.exceptions.APIError`) carry an HTTP status.
Every other family is mapped here, at the one choke point, by what it means to the caller::

    EngineUnreachable, RegistryUnreachable, RegistryRateLimited   503  try again later
    JobTimeout                                                    504
    RegistryAuthFailed                                            502  the *sidecar's* registry
                                                                       credential, never a 401
    other EngineError / RegistryError                             502  upstream failed
    ServiceNotFound                                               409  stack not as configured
    InvalidSnapshotId 400, SnapshotNotFound 404, SnapshotWrongProject 409, SnapshotCorrupt 422,
    InsufficientDiskSpace / BackupDirUnwritable 507, SignatureRefused 400
    anything else                                                 500

A 5xx body says what failed in one fixed sentence per family: the error's own message (tool
stderr, file paths, engine and registry URLs) goes to the log only, since read-token holders
see these bodies.
"""

from __future__ import annotations

from typing import Any

from supervisor import exceptions as exc
from supervisor.exceptions import (
    APIError,
    JobRunning,
    RestoreDisabled,
    SupervisorError,
    UnsupportedMediaType,
)

# First match along the class's MRO wins, so a specific class overrides its family.
_STATUS: dict[type[SupervisorError], int] = {
    exc.EngineUnreachable: 503,
    exc.JobTimeout: 504,
    exc.ServiceNotFound: 409,
    exc.EngineError: 502,
    exc.RegistryUnreachable: 503,
    exc.RegistryRateLimited: 503,
    exc.RegistryAuthFailed: 502,
    exc.RegistryError: 502,
    exc.SignatureRefused: 400,
    exc.InvalidSnapshotId: 400,
    exc.SnapshotNotFound: 404,
    exc.SnapshotWrongProject: 409,
    exc.SnapshotCorrupt: 422,
    exc.InsufficientDiskSpace: 507,
    exc.BackupDirUnwritable: 507,
}

# What a 5xx body says instead of the error's own message.
_PUBLIC_MESSAGE: dict[type[SupervisorError], str] = {
    exc.EngineUnreachable: "the Docker engine cannot be reached",
    exc.ProxyForbidden: "the docker proxy refused an engine call the supervisor needs",
    exc.JobTimeout: "an engine operation ran out of time",
    exc.EngineError: "the Docker engine refused or failed an operation",
    exc.RegistryUnreachable: "the image registry cannot be reached",
    exc.RegistryRateLimited: "the image registry is rate-limiting the supervisor; try later",
    exc.RegistryAuthFailed: "the image registry refused the supervisor's registry credentials "
    "(SUPERVISOR_REGISTRY_USERNAME/_PASSWORD or SUPERVISOR_DOCKER_CONFIG)",
    exc.RegistryError: "the image registry failed a request",
    exc.SignatureError: "signature verification could not be done",
    exc.InsufficientDiskSpace: "the backups disk has not enough free space",
    exc.SnapshotError: "the snapshot could not be taken or restored",
    exc.StateError: "the state directory holds something invalid",
    exc.ConfigError: "a setting is invalid",
}
GENERIC_MESSAGE = "internal error"
SEE_LOG = "; see the supervisor log"


def http_status(err: SupervisorError | type[SupervisorError]) -> int:
    """The HTTP status ``err`` (an instance or a class) is answered with."""
    cls = err if isinstance(err, type) else type(err)
    if issubclass(cls, APIError):
        return cls.status
    for klass in cls.__mro__:
        if klass in _STATUS:
            return _STATUS[klass]
    return 500


def public_message(err: SupervisorError) -> str:
    """The message a caller may see: the error's own below 500, a fixed sentence from 500 on."""
    if http_status(err) < 500:
        return err.message
    for klass in type(err).__mro__:
        if klass in _PUBLIC_MESSAGE:
            return _PUBLIC_MESSAGE[klass] + SEE_LOG
    return GENERIC_MESSAGE + SEE_LOG


def envelope(error_key: str, message: str, update_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"error_key": error_key, "message": message}
    if update_id is not None:
        body["update_id"] = update_id
    return body


def error_envelope(err: SupervisorError) -> dict[str, Any]:
    """``err`` as the envelope a caller sees (of its details only ``update_id``, and the
    ``problems`` list of a refused policy)."""
    update_id = err.details.get("update_id")
    body = envelope(err.error_key, public_message(err), str(update_id) if update_id else None)
    problems = err.details.get("problems")
    if isinstance(err, APIError) and isinstance(problems, list):
        body["problems"] = [str(problem) for problem in problems]
    return body


__all__ = [
    "JobRunning",
    "RestoreDisabled",
    "UnsupportedMediaType",
    "envelope",
    "error_envelope",
    "http_status",
    "public_message",
]
