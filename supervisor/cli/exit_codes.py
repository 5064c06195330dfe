"""Exit codes a script can rely on (also in ``supervisor --help`` and ``docs/api.md``)."""

from __future__ import annotations

from enum import IntEnum

from supervisor.api.errors import http_status
from supervisor.client import SidecarUnreachable
from supervisor.exceptions import ConfigError, SupervisorError
from supervisor.update.stages import Stage


class ExitCode(IntEnum):
    OK = 0  # completed / done
    USAGE = 2  # bad arguments, token file or settings
    REFUSED = 3  # the sidecar said no (4xx: already current, running, frozen …) or you did
    FAILED = 4  # the run failed, nothing changed (or an unexpected error)
    ROLLED_BACK = 5  # the run failed and the old version is back, data restored
    NEEDS_INTERVENTION = 6  # rollback failed: a person must look
    CANCELLED = 7
    UNREACHABLE = 8  # no answer from the sidecar
    INTERRUPTED = 130  # Ctrl-C while following (the run goes on in the sidecar)


EPILOG = """exit codes:
  0    completed / ok
  2    usage or settings error
  3    refused: a 4xx from the sidecar (already current, running, frozen ...), or you said no
  4    failed, nothing changed (or an unexpected error)
  5    rolled back: the old version runs again, its data restored
  6    needs intervention: the rollback itself failed
  7    cancelled
  8    cannot reach the sidecar
  130  interrupted while following (the run goes on in the sidecar)

environment: SUPERVISOR_URL (default http://127.0.0.1:8080), SUPERVISOR_TOKEN_FILE
(default: SUPERVISOR_ADMIN_TOKEN_FILE, then SUPERVISOR_READ_TOKEN_FILE)"""

_BY_STATE = {
    Stage.COMPLETED: ExitCode.OK,
    Stage.FAILED: ExitCode.FAILED,
    Stage.ROLLED_BACK: ExitCode.ROLLED_BACK,
    Stage.NEEDS_INTERVENTION: ExitCode.NEEDS_INTERVENTION,
    Stage.CANCELLED: ExitCode.CANCELLED,
}


def for_state(state: Stage | None) -> ExitCode:
    """A finished run's code; a run still going (``--detach``) is OK."""
    return _BY_STATE.get(state, ExitCode.OK) if state is not None else ExitCode.OK


def for_error(err: SupervisorError) -> ExitCode:
    if isinstance(err, SidecarUnreachable):
        return ExitCode.UNREACHABLE
    if isinstance(err, ConfigError) or err.error_key == "usage":
        return ExitCode.USAGE
    return ExitCode.REFUSED if 400 <= http_status(err) < 500 else ExitCode.FAILED
