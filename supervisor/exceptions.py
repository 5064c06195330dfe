"""Every error the supervisor raises, under one root.

::

    SupervisorError                      (500 internal_error)
    ├── ConfigError                      settings refused at start-up
    ├── StateError                       a journal / pin file is invalid or unsafe
    ├── APIError                         request-level refusals: the only classes with a status
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
    │   ├── InterventionRequired         409 needs_intervention (a run awaits acknowledgement)
    │   ├── NotAcknowledgeable           409 not_acknowledgeable
    │   ├── CurrentVersionUnknown        409 current_version_unknown (images tagged :latest …)
    │   ├── UnsupportedMediaType         415 unsupported_media_type
    │   ├── RestoreDisabled              403 restore_disabled
    │   ├── JobRunning                   409 job_running
    │   ├── StackBusy                    409 stack_busy  (another writer holds the stack lock)
    │   └── PayloadTooLarge              413 payload_too_large
    ├── UsageError                       CLI options or token file (exit code 2)
    ├── SidecarUnreachable               the client got no answer from the sidecar
    ├── NotificationFailed               a notice not delivered (supervisor.notify only)
    ├── EngineError                      the Docker engine (through the proxy); rendered 502
    │   ├── EngineUnreachable            503
    │   ├── ProxyForbidden               502  the docker-proxy refused a path
    │   ├── EngineNotFound               502  container / image / network missing
    │   ├── EngineConflict               502  name in use, container not running …
    │   ├── ServiceNotFound              409  no such Compose service in the project
    │   ├── CommandFailed                502  an exec or one-shot exited non-zero
    │   │   └── MigrationFailed          502  the migrations container exited non-zero
    │   ├── JobTimeout                   504  exec / one-shot / wait ran out of time
    │   ├── HealthCheckFailed            502  container never healthy, or restarted
    │   ├── RetainedContainerLost        502  old container gone, cannot be recreated
    │   └── LocalFileChanged             502  a file changed while copied into a container
    ├── RegistryError                    the OCI distribution API; rendered 502
    │   ├── InvalidReference             502  image reference does not parse
    │   ├── RegistryUnreachable          503
    │   ├── RegistryAuthFailed           502  *our* credential, never the caller's 401
    │   ├── ManifestNotFound             502  tag / digest / repository unknown
    │   ├── RegistryRateLimited          503
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
        ├── InsufficientDiskSpace        507  preflight: estimate + margin does not fit
        │   └── DiskFull                 507  the disk filled up mid-write (disk_full)
        ├── BackupDirUnwritable          507  preflight: the backups folder cannot be written
        ├── BackupFailed                 500  a dump did not complete; nothing was kept
        └── RestoreFailed                500  the message says what was left as it was

Every class carries a stable ``error_key``, so scripts match on the key rather
than on message wording. Only :class:`APIError` (a refusal of the request
itself) carries an HTTP ``status``; the numbers shown for the other families
are how :func:`supervisor.api.errors.http_status` renders them at the one
choke point (engine and registry failures are 502/503/504, never a 4xx the
caller would take for its own mistake). Library errors are translated at the
adapter edge with ``raise … from err``.
"""

from __future__ import annotations

from typing import Any, ClassVar


class SupervisorError(Exception):
    """Root of every error this package raises on purpose."""

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
    """A request was refused; the status is a 4xx. Only these errors carry an HTTP status."""

    status: ClassVar[int] = 400
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


class InterventionRequired(APIError):
    """A run ended ``needs_intervention``: no update starts until an admin acknowledges it."""

    status = 409
    error_key = "needs_intervention"


class NotAcknowledgeable(APIError):
    """Only a run that ended ``needs_intervention`` and is not yet acknowledged can be."""

    status = 409
    error_key = "not_acknowledgeable"


class CurrentVersionUnknown(APIError):
    """The running images are tagged ``latest`` (or another non-version): nothing to compare a
    target with. A state of the stack, not a bad request; the message says how to fix it."""

    status = 409
    error_key = "current_version_unknown"


class MarkNotFound(NotFound):
    """``clear`` of a version that has no skip, snooze or bad mark."""

    error_key = "mark_not_found"


class NotFrozen(APIError):
    """``unfreeze`` while auto-apply is not frozen."""

    status = 409
    error_key = "not_frozen"


class PolicyInvalid(APIError):
    """A policy reload found problems (every one listed); the old policy stays in force."""

    status = 422
    error_key = "policy_invalid"


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


class StackBusy(APIError):
    """Another writer of the stack (update, recovery, restore, snapshot, retention) holds the
    cross-process stack lock (``supervisor.oplock``); the message names it."""

    status = 409
    error_key = "stack_busy"


class PayloadTooLarge(APIError):
    status = 413
    error_key = "payload_too_large"


# --- Docker engine -------------------------------------------------------------------


class EngineError(SupervisorError):
    """The Docker engine refused or failed an operation."""

    error_key = "engine_error"


class EngineUnreachable(EngineError):
    error_key = "engine_unreachable"


class ProxyForbidden(EngineError):
    """The docker-socket-proxy does not grant this API path to the sidecar."""

    error_key = "engine_path_forbidden"


class EngineNotFound(EngineError):
    error_key = "engine_not_found"


class EngineConflict(EngineError):
    error_key = "engine_conflict"


class ServiceNotFound(EngineError):
    error_key = "service_not_found"


class CommandFailed(EngineError):
    """An exec or one-shot container exited non-zero."""

    error_key = "command_failed"


class RollbackUnsafe(SupervisorError):
    """Going on with a rollback would destroy something (e.g. restore an unusable snapshot):
    the run stops in ``needs_intervention`` with everything kept."""

    error_key = "rollback_unsafe"


class MigrationFailed(CommandFailed):
    """The target's migrations container exited non-zero (in ``migrate`` or rehearsal)."""

    error_key = "migration_failed"


class JobTimeout(EngineError):
    error_key = "timeout"


class HealthCheckFailed(EngineError):
    error_key = "health_check_failed"


class RetainedContainerLost(EngineError):
    """A rollback found the old container gone and could not create it again from its
    recorded spec and image: only an operator can bring that version back."""

    error_key = "retained_container_lost"


# --- OCI registry --------------------------------------------------------------------


class RegistryError(SupervisorError):
    error_key = "registry_error"


class InvalidReference(RegistryError):
    error_key = "invalid_reference"


class RegistryUnreachable(RegistryError):
    error_key = "registry_unreachable"


class RegistryAuthFailed(RegistryError):
    error_key = "registry_auth_failed"


class ManifestNotFound(RegistryError):
    error_key = "manifest_not_found"


class RegistryRateLimited(RegistryError):
    error_key = "registry_rate_limited"


class DigestMismatch(RegistryError):
    error_key = "digest_mismatch"


# --- signatures ----------------------------------------------------------------------


class SignatureError(SupervisorError):
    """Signature verification could not be set up, or refused what a run would start."""

    error_key = "signature_error"


class SignatureRefused(SignatureError):
    """An ``enforce`` service has no valid signature; the message lists services and reasons."""

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

    error_key = "invalid_snapshot_id"


class SnapshotNotFound(SnapshotError):
    error_key = "snapshot_not_found"


class SnapshotWrongProject(SnapshotError):
    """Restoring another stack's data over this one is never what an operator meant."""

    error_key = "snapshot_wrong_project"


class SnapshotCorrupt(SnapshotError):
    error_key = "snapshot_corrupt"


class InsufficientDiskSpace(SnapshotError):
    error_key = "insufficient_disk_space"


class DiskFull(InsufficientDiskSpace):
    """A write failed with ENOSPC/EDQUOT mid-snapshot; the partial snapshot was removed."""

    error_key = "disk_full"


class BackupDirUnwritable(SnapshotError):
    """The preflight could not create a file in the backups folder (permissions, read-only)."""

    error_key = "backup_dir_unwritable"


class BackupFailed(SnapshotError):
    error_key = "backup_failed"


class RestoreFailed(SnapshotError):
    error_key = "restore_failed"


# --- moved here from the modules that raise them (still importable from there) -----------


class LocalFileChanged(EngineError):
    """A file being copied into a container shrank or could not be read while it was sent
    (raised by ``supervisor.engine.docker_files``)."""

    error_key = "local_file_changed"


class UsageError(SupervisorError):
    """Bad CLI options or an unreadable token file (exit code 2; ``supervisor.cli``)."""

    error_key = "usage"


class SidecarUnreachable(SupervisorError):
    """The client got no answer from the sidecar (refused, reset, timed out) after its
    retries (``supervisor.client``)."""

    error_key = "sidecar_unreachable"


class NotificationFailed(SupervisorError):
    """One attempt to deliver a notice failed (``supervisor.notify``). Never leaves the
    notifier: it is retried, logged without the channel's URL, and counted. ``retryable`` is
    False when another attempt cannot help (a webhook answering 4xx)."""

    error_key = "notification_failed"

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable
