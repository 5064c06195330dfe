"""An incremental Server-Sent Events parser (the WHATWG event-stream rules we need).

Fed line by line, it returns a complete :class:`SSEMessage` on each blank line that ends an
event with data. Comments (``: keep-alive``) and ``retry:`` lines are consumed silently; an
``id:`` line counts even without data, as the spec says (it moves the resume point).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SSEMessage:
    id: str | None
    event: str
    data: str


class SSEParser:
    def __init__(self) -> None:
        self.last_id: str | None = None
        self.retry_ms: int | None = None
        self._event = ""
        self._data: list[str] = []

    def feed_line(self, line: str) -> SSEMessage | None:
        line = line.rstrip("\r\n")
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self.last_id = value
        elif name == "retry" and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> SSEMessage | None:
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None
        return SSEMessage(id=self.last_id, event=event or "message", data="\n".join(data))
