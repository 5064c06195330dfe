"""The live display of a run for people: stage, overall percentage, pulled bytes, log lines.

Fed the run's SSE events (``phase``/``progress``/``log``/``result``). Progress events that carry
``bytes_done``/``bytes_total`` (during ``pull``; with the ``image``) drive a second bar with
transfer sizes in human units. On a
terminal it redraws in place; redirected to a file, rich prints the final state once.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

from rich import filesize
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from supervisor.update.models import RunEvent


class RunProgress:
    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self._overall: TaskID = self._progress.add_task("starting", total=100, detail="")
        self._transfer: TaskID | None = None

    def __enter__(self) -> Self:
        self._progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()

    def handle(self, event: RunEvent) -> None:
        data = event.data
        if event.event == "phase":
            stage = data.get("state", "")
            self._progress.update(
                self._overall,
                description=f"[bold]{stage}[/bold] {data.get('message', '')}",
                completed=_percent(data.get("progress"), self._completed()),
            )
        elif event.event == "progress":
            self._progress.update(
                self._overall, completed=_percent(data.get("progress"), self._completed())
            )
            self._show_bytes(data)
        elif event.event == "log":
            self._progress.console.print(f"  {data.get('message', '')}", markup=False)
        elif event.event == "result":
            state = str(data.get("state", ""))
            if state == "completed":
                self._progress.update(self._overall, completed=100)
            self._progress.update(self._overall, description=f"[bold]{state}[/bold]")

    def _completed(self) -> float:
        return self._progress.tasks[self._overall].completed

    def _show_bytes(self, data: dict[str, object]) -> None:
        done, total = data.get("bytes_done"), data.get("bytes_total")
        if not isinstance(done, int) or not isinstance(total, int) or total <= 0:
            return
        label = f"{data.get('state', '')} {_short_image(data.get('image'))}".strip()
        detail = f"{filesize.decimal(done)} / {filesize.decimal(total)}"
        if self._transfer is None:
            self._transfer = self._progress.add_task(label, total=total, detail=detail)
        self._progress.update(
            self._transfer, description=f"  {label}", completed=done, total=total, detail=detail
        )


def _short_image(image: object) -> str:
    """``127.0.0.1:5000/acme/app@sha256:3f2a…`` → ``app@3f2a9c1b7d4e``: fits next to a bar."""
    if not isinstance(image, str) or not image:
        return ""
    name, _, digest = image.partition("@")
    name = name.rsplit("/", 1)[-1]
    return f"{name}@{digest.split(':', 1)[-1][:12]}" if digest else name


def _percent(value: object, fallback: float) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(min(100, max(0, value)))
    return fallback
