"""Every error the supervisor raises, under one root.

::

    SupervisorError                      (500 internal_error)
    ├── ConfigError                      settings refused at start-up
    ├── StateError                       a journal / pin file is invalid or unsafe
    ├── APIError                         request-level refusals (4xx)
    │   ├── BadRequest                   400 bad_request
    │   ├── InvalidVersion               400 invalid_version
    │   ├── AlreadyCurrent               400 already_current
    │   ├── DowngradeRefused             400 downgrade_refused
    │   ├── UpdatesBlocked               400 updates_blocked   (freeze / hard pin)
    │   ├── Unauthorized                 401 unauthorized
    │   ├── Forbidden                    403 forbidden
    │   ├── NotFound                     404 not_found
    │   │   ├── NoUpdate                 404 no_update
    │   │   └── UpdateNotFound           404 update_not_found
    │   ├── UpdateRunning                409 update_running
    │   ├── NotCancellable               409 not_cancellable
    │   ├── UnsupportedMediaType         415 unsupported_media_type
    │   ├── RestoreDisabled              403 restore_disabled
    │   ├── JobRunning                   409 job_running
    │   └── PayloadTooLarge              413 payload_too_large
    ├── EngineError                      the Docker engine (through the proxy)
    │   ├── EngineUnreachable            503
    │   ├── ProxyForbidden               502  the docker-proxy refused a path
    │   ├── EngineNotFound               404  container / image / network missing
    │   ├── EngineConflict               409  name in use, container not running …
    │   ├── ServiceNotFound              404  no such Compose service in the project
    │   ├── CommandFailed                500  an exec or one-shot exited non-zero
    │   ├── JobTimeout                   504  exec / one-shot / wait ran out of time
    │   └── HealthCheckFailed            500  container never healthy, or restarted
    ├── RegistryError                    the OCI distribution API
    │   ├── InvalidReference             400  image reference does not parse
    │   ├── RegistryUnreachable          503
    │   ├── RegistryAuthFailed           401
    │   ├── ManifestNotFound             404  tag / digest / repository unknown
    │   ├── RegistryRateLimited          429
    │   └── DigestMismatch               502  content does not hash to its digest
    ├── SignatureError                   500  cosign signature checks (supervisor.signatures)
    │   ├── SignatureRefused             400  the policy refused an image in ``verify``
    │   ├── TrustRootInvalid             500  trusted_root.json missing or malformed (also a
    │   │                                     ConfigError: raised at start-up)
    │   └── PublicKeyInvalid             500  cosign public key missing or not ECDSA P-256
    │                                         (also a ConfigError: raised at start-up)
    └── SnapshotError                    500  backups and restores (supervisor.snapshots)
        ├── InvalidSnapshotId            400  not <UTC timestamp>_<8 hex>: never a path
        ├── SnapshotNotFound             404
        ├── SnapshotWrongProject         409  taken from another Compose project
        ├── SnapshotCorrupt              422  a file does not match its manifest checksum
        ├── InsufficientDiskSpace        507  preflight estimate, or the disk filled up
        ├── BackupFailed                 500  a dump did not complete; nothing was kept
        └── RestoreFailed                500  the message says what was left as it was

Every class carries an HTTP ``status`` and a stable ``error_key`` so that the
API layer renders any of them into one JSON envelope without a lookup table,
and so that scripts can match on the key rather than on message wording.
Library errors are translated at the adapter edge with ``raise … from err``.
"""

from __future__ import annotations

from typing import Any, ClassVar


class SupervisorError(Exception):
    """Root of every error this package raises on purpose."""

    status: ClassVar[int] = 500
    error_key: ClassVar[str] = "internal_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details

    def to_dict(self) -> dict[str, Any]:
        """The JSON error envelope body for this error (never holds secrets)."""
        body: dict[str, Any] = {"error_key": self.error_key, "message": self.message}
        body.update(self.details)
        return body


class ConfigError(SupervisorError):
    """A setting is missing or invalid; raised at start-up, never later."""

    error_key = "config_invalid"


class StateError(SupervisorError):
    """The state directory holds something invalid, or a value is unsafe to write."""

    error_key = "state_invalid"


# --- API-facing refusals -------------------------------------------------------------


class APIError(SupervisorError):
    """A request was refused; the status is a 4xx."""

    status = 400
    error_key = "bad_request"


class BadRequest(APIError):
    """Malformed body, wrong JSON type, unknown field."""


class InvalidVersion(APIError):
    error_key = "invalid_version"


class AlreadyCurrent(APIError):
    error_key = "already_current"


class DowngradeRefused(APIError):
    error_key = "downgrade_refused"


class UpdatesBlocked(APIError):
    """A freeze file or a hard pin forbids updating right now."""

    error_key = "updates_blocked"


class Unauthorized(APIError):
    status = 401
    error_key = "unauthorized"


class Forbidden(APIError):
    status = 403
    error_key = "forbidden"


class NotFound(APIError):
    status = 404
    error_key = "not_found"


class NoUpdate(NotFound):
    error_key = "no_update"


class UpdateNotFound(NotFound):
    error_key = "update_not_found"


class UpdateRunning(APIError):
    status = 409
    error_key = "update_running"


class NotCancellable(APIError):
    status = 409
    error_key = "not_cancellable"


class UnsupportedMediaType(APIError):
    status = 415
    error_key = "unsupported_media_type"


class RestoreDisabled(Forbidden):
    """Restoring over HTTP is off (``SUPERVISOR_RESTORE_OVER_HTTP``): an operator decision."""

    error_key = "restore_disabled"


class JobRunning(APIError):
    """A snapshot or restore job is already running."""

    status = 409
    error_key = "job_running"


class PayloadTooLarge(APIError):
    status = 413
    error_key = "payload_too_large"


# --- Docker engine -------------------------------------------------------------------


class EngineError(SupervisorError):
    """The Docker engine refused or failed an operation."""

    status = 502
    error_key = "engine_error"


class EngineUnreachable(EngineError):
    status = 503
    error_key = "engine_unreachable"


class ProxyForbidden(EngineError):
    """The docker-socket-proxy does not grant this API path to the sidecar."""

    status = 502
    error_key = "engine_path_forbidden"


class EngineNotFound(EngineError):
    status = 404
    error_key = "engine_not_found"


class EngineConflict(EngineError):
    status = 409
    error_key = "engine_conflict"


class ServiceNotFound(EngineError):
    status = 404
    error_key = "service_not_found"


class CommandFailed(EngineError):
    """An exec or one-shot container exited non-zero."""

    status = 500
    error_key = "command_failed"


class JobTimeout(EngineError):
    status = 504
    error_key = "timeout"


class HealthCheckFailed(EngineError):
    status = 500
    error_key = "health_check_failed"


# --- OCI registry --------------------------------------------------------------------


class RegistryError(SupervisorError):
    status = 502
    error_key = "registry_error"


class InvalidReference(RegistryError):
    status = 400
    error_key = "invalid_reference"


class RegistryUnreachable(RegistryError):
    status = 503
    error_key = "registry_unreachable"


class RegistryAuthFailed(RegistryError):
    status = 401
    error_key = "registry_auth_failed"


class ManifestNotFound(RegistryError):
    status = 404
    error_key = "manifest_not_found"


class RegistryRateLimited(RegistryError):
    status = 429
    error_key = "registry_rate_limited"


class DigestMismatch(RegistryError):
    status = 502
    error_key = "digest_mismatch"


# --- signatures ----------------------------------------------------------------------


class SignatureError(SupervisorError):
    """Signature verification could not be set up, or refused what a run would start."""

    error_key = "signature_error"


class SignatureRefused(SignatureError):
    """An ``enforce`` service has no valid signature; the message lists services and reasons."""

    status = 400
    error_key = "signature_refused"


class TrustRootInvalid(SignatureError, ConfigError):
    """The Sigstore trusted root cannot be read or parsed; found at start-up, never mid-run."""

    error_key = "trust_root_invalid"


class PublicKeyInvalid(SignatureError, ConfigError):
    """The cosign public key cannot be read or is not an ECDSA P-256 key."""

    error_key = "public_key_invalid"


# --- snapshots -----------------------------------------------------------------------


class SnapshotError(SupervisorError):
    """A backup or restore could not be done; the message says what was left behind."""

    error_key = "snapshot_error"


class InvalidSnapshotId(SnapshotError):
    """Refused before any path is built from it (``../`` and friends never reach the disk)."""

    status = 400
    error_key = "invalid_snapshot_id"


class SnapshotNotFound(SnapshotError):
    status = 404
    error_key = "snapshot_not_found"


class SnapshotWrongProject(SnapshotError):
    """Restoring another stack's data over this one is never what an operator meant."""

    status = 409
    error_key = "snapshot_wrong_project"


class SnapshotCorrupt(SnapshotError):
    status = 422
    error_key = "snapshot_corrupt"


class InsufficientDiskSpace(SnapshotError):
    status = 507
    error_key = "insufficient_disk_space"


class BackupFailed(SnapshotError):
    error_key = "backup_failed"


class RestoreFailed(SnapshotError):
    error_key = "restore_failed"
