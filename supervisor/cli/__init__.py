"""``supervisor …``: the operator CLI (and ``serve``, the sidecar itself).

Most commands talk to a running sidecar over HTTP with :class:`supervisor.client.
SupervisorClient`; ``serve`` builds the app, and ``restore``/``freeze``/``unfreeze``/``verify``
act in the container. Every command is an ``async def (CliContext) -> int`` returning an
:class:`ExitCode`; :func:`run` maps errors to exit codes in one place.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence

from supervisor.exceptions import SupervisorError

from . import commands_local, commands_policy, commands_read, commands_update, serve
from .context import CliContext
from .exit_codes import ExitCode
from .parser import build_parser

Command = Callable[[CliContext], Awaitable[int]]
COMMANDS: dict[str, Command] = {
    "serve": serve.serve,
    "check": commands_read.check,
    "plan": commands_read.plan,
    "update": commands_update.update,
    "status": commands_read.status,
    "history": commands_read.history,
    "snapshots": commands_read.snapshots,
    "restore": commands_local.restore,
    "rollback": commands_update.rollback,
    "acknowledge": commands_update.acknowledge,
    "verify": commands_local.verify,
    "freeze": commands_local.freeze,
    "unfreeze": commands_local.unfreeze,
    "policy": commands_policy.policy,
}


async def run(argv: Sequence[str] | None = None, **io: object) -> int:
    """Parse ``argv`` and run the command; ``io`` overrides CliContext fields (tests)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # --help (0) or a usage error (2)
        return int(done.code or 0)
    ctx = CliContext(args, **io)  # type: ignore[arg-type]
    try:
        return int(await COMMANDS[args.command](ctx))
    except SupervisorError as err:
        return int(ctx.fail(err))
    except NotImplementedError as err:
        ctx.err.print(f"not available yet: {err}", markup=False)
        return int(ExitCode.FAILED)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return asyncio.run(run(argv))
    except (KeyboardInterrupt, asyncio.CancelledError):
        return int(ExitCode.INTERRUPTED)


__all__ = ["COMMANDS", "ExitCode", "main", "run"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
