"""Jobs inside the stack: ``exec`` in a running container, one-shot containers.

Exec is what backups use: the database's own client tools run inside its
container (client and server versions always match) and stdout is streamed to
a sink chunk by chunk, so a dump of any size never sits in memory. Commands
are argv lists, never shell strings.

A one-shot container (migrations) is created like the Compose service's
container, from the *target* image, waited for with a timeout, and always
removed, even when the caller is cancelled.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from supervisor.const import JOB_LABEL
from supervisor.engine.container_spec import one_shot_spec
from supervisor.engine.docker_errors import engine_call
from supervisor.engine.models import ExecResult, OneShotResult
from supervisor.engine.protocol import OutputSink
from supervisor.exceptions import CommandFailed, JobTimeout

if TYPE_CHECKING:
    from supervisor.engine.docker_engine import DockerEngine

STDERR_TAIL_BYTES = 16 * 1024
LOG_TAIL_LINES = 200


class _Tail:
    """The last ``limit`` bytes written to it, for error messages."""

    def __init__(self, limit: int) -> None:
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._limit = limit

    def write(self, data: bytes) -> None:
        self._chunks.append(data)
        self._size += len(data)
        while self._size - len(self._chunks[0]) >= self._limit:
            self._size -= len(self._chunks.popleft())

    def text(self) -> str:
        return b"".join(self._chunks)[-self._limit :].decode("utf-8", "replace")


async def exec_in(
    engine: DockerEngine,
    container_id: str,
    argv: Sequence[str],
    stdout: OutputSink | None,
    timeout: float | None,
    env: Mapping[str, str] | None,
    check: bool,
) -> ExecResult:
    if not argv or isinstance(argv, str):
        raise TypeError("argv must be a non-empty list of arguments, not a string")
    program = argv[0]
    action = f"running {program} in container {container_id[:12]}"
    started = time.monotonic()
    stderr = _Tail(STDERR_TAIL_BYTES)
    received = 0
    try:
        async with asyncio.timeout(timeout), engine_call(action, engine.url):
            execution = await engine.client.containers.container(container_id).exec(
                list(argv), stdout=True, stderr=True, environment=dict(env) if env else None
            )
            async with execution.start(detach=False) as stream:
                while (message := await stream.read_out()) is not None:
                    if message.stream == 1:
                        received += len(message.data)
                        if stdout is not None:
                            await stdout(message.data)
                    else:
                        stderr.write(message.data)
            exit_code = int((await execution.inspect())["ExitCode"])
    except TimeoutError as err:
        raise JobTimeout(f"{action}: no result after {timeout:g} s") from err
    result = ExecResult(exit_code, received, stderr.text(), time.monotonic() - started)
    if check and exit_code != 0:
        raise CommandFailed(
            f"{action}: exited with code {exit_code}: {result.stderr.strip()[-2000:]}",
            exit_code=exit_code,
        )
    return result


async def run_one_shot(
    engine: DockerEngine,
    template_id: str,
    image: str,
    run_id: str,
    timeout: float,
    command: Sequence[str] | None,
    env: Mapping[str, str] | None = None,
) -> OneShotResult:
    template = await engine.inspect_container(template_id)
    template_image = await engine.inspect_image(template["Image"])
    new_image = await engine.inspect_image(image)
    spec = one_shot_spec(template, template_image, image, new_image["Id"], run_id)
    if command is not None:
        spec.body["Cmd"] = list(command)
    if env:
        overridden = {f"{key}=" for key in env}
        kept = [e for e in spec.body["Env"] if not e.startswith(tuple(overridden))]
        spec.body["Env"] = kept + [f"{key}={value}" for key, value in env.items()]
    spec.body["Labels"][JOB_LABEL] = "one-shot"
    name = f"{template['Name'].lstrip('/')}.run-{run_id}"
    return await run_to_completion(
        engine, spec.body, name, spec.extra_networks, timeout, engine._remove
    )


async def run_to_completion(
    engine: DockerEngine,
    body: dict[str, Any],
    name: str,
    extra_networks: Mapping[str, Any],
    timeout: float,
    remove: Callable[[str], Awaitable[None]],
) -> OneShotResult:
    """Create, start and wait for a one-shot container; always removed with ``remove``."""
    started = time.monotonic()
    container_id = await engine.create_container(body, name, extra_networks)
    try:
        await engine.start(container_id)
        container = engine.client.containers.container(container_id)
        try:
            async with asyncio.timeout(timeout), engine_call(f"waiting for {name}", engine.url):
                status = await container.wait(timeout=None)
        except TimeoutError as err:
            logs = await engine.logs_tail(container_id, LOG_TAIL_LINES)
            raise JobTimeout(
                f"one-shot container {name} did not finish in {timeout:g} s", logs=logs
            ) from err
        logs = await engine.logs_tail(container_id, LOG_TAIL_LINES)
        return OneShotResult(int(status["StatusCode"]), logs, time.monotonic() - started)
    finally:
        await asyncio.shield(remove(container_id))
