"""What every command gets: parsed options, output, the sidecar client, confirmation.

The CLI reads two variables of its own, ``SUPERVISOR_URL`` and ``SUPERVISOR_TOKEN_FILE``.
They share the ``SUPERVISOR_`` prefix with the sidecar's settings, whose loader refuses unknown
names, so :meth:`CliContext.settings_env` removes them before ``serve`` or a local command
loads the settings. Without a token file option, the sidecar's own admin (then read) token file
is used, so ``docker compose exec supervisor supervisor status`` needs no extra option.

``serve`` and the local commands get the sidecar's object graph from :meth:`CliContext.runtime`
(:func:`supervisor.services.build_runtime`); tests plug fakes of the adapters in through
``open_runtime``, the way an httpx client takes a transport.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from rich.console import Console

from supervisor.client import SupervisorClient
from supervisor.config import Settings, load_settings
from supervisor.exceptions import SupervisorError, UsageError

from .exit_codes import ExitCode, for_error

if TYPE_CHECKING:
    from supervisor.services import Runtime

RuntimeFactory = Callable[[Settings], AbstractAsyncContextManager["Runtime"]]

CLI_VARIABLES = ("SUPERVISOR_URL", "SUPERVISOR_TOKEN_FILE")
TOKEN_FALLBACKS = ("SUPERVISOR_ADMIN_TOKEN_FILE", "SUPERVISOR_READ_TOKEN_FILE")
DEFAULT_URL = "http://127.0.0.1:8080"


@dataclass
class CliContext:
    args: argparse.Namespace
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    stdin: TextIO = field(default_factory=lambda: sys.stdin)
    open_runtime: RuntimeFactory | None = None  # None: the real adapters from the settings

    def __post_init__(self) -> None:
        self.out = Console(file=self.stdout, highlight=False, soft_wrap=True)
        self.err = Console(file=self.stderr, highlight=False, soft_wrap=True)

    @property
    def json(self) -> bool:
        return bool(getattr(self.args, "json", False))

    @property
    def url(self) -> str:
        return getattr(self.args, "url", None) or self.env.get("SUPERVISOR_URL") or DEFAULT_URL

    def token(self) -> str | None:
        path = getattr(self.args, "token_file", None) or self.env.get("SUPERVISOR_TOKEN_FILE")
        for fallback in (path, *(self.env.get(name) for name in TOKEN_FALLBACKS)):
            if fallback:
                return _read_token(Path(fallback))
        return None

    def client(self) -> SupervisorClient:
        # Three tries (about 1.5 s) before "cannot reach": an operator is waiting.
        return SupervisorClient(self.url, self.token(), trigger="cli", attempts=3)

    def settings_env(self) -> dict[str, str]:
        return {k: v for k, v in self.env.items() if k not in CLI_VARIABLES}

    def settings(self) -> Settings:
        return load_settings(self.settings_env())

    def runtime(self, settings: Settings) -> AbstractAsyncContextManager[Runtime]:
        """The sidecar's object graph for ``serve`` and the local commands (``async with``)."""
        if self.open_runtime is not None:
            return self.open_runtime(settings)
        from supervisor.services import build_runtime  # aiodocker & co. only when needed

        return build_runtime(settings)

    # --- output ----------------------------------------------------------------------
    def emit_json(self, data: Any) -> None:
        """The one JSON object a ``--json`` command prints."""
        self.stdout.write(json.dumps(data, default=str, sort_keys=True) + "\n")
        self.stdout.flush()

    def fail(self, err: SupervisorError) -> ExitCode:
        """Report ``err`` (envelope on stdout with --json, a line on stderr) → its code."""
        code = for_error(err)
        if self.json:
            self.emit_json(
                {"error_key": err.error_key, "message": err.message, "exit_code": int(code)}
            )
        label = "cannot reach the sidecar" if code is ExitCode.UNREACHABLE else err.error_key
        self.err.print(f"[red]error[/red] ({label}): {err.message}", markup=True)
        return code

    async def confirm(self, question: str) -> bool:
        """Ask unless ``--yes``; end of input counts as no."""
        if getattr(self.args, "yes", False):
            return True
        self.err.print(f"{question} [y/N] ", end="", markup=False)
        answer = await asyncio.to_thread(self.stdin.readline)
        return answer.strip().lower() in ("y", "yes")


def _read_token(path: Path) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"cannot read the token file {path}: {err}") from None
    if not token:
        raise UsageError(f"the token file {path} is empty")
    return token
