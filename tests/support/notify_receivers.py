"""Real notification receivers for tests: an HTTP server and an SMTP server on loopback.

:class:`HttpReceiver` is an aiohttp server that records every POST (Apprise ``json://`` and
the signed webhook both land here); it can answer the first N requests with an error, or
hang until released, to prove retries and that a slow receiver never holds up a caller.
:class:`SmtpReceiver` is an ``aiosmtpd`` server (its own thread and loop) that accepts
AUTH LOGIN/PLAIN without TLS for one user, so Apprise's ``mailto://`` plugin talks real SMTP
to it. Nothing is mocked: the supervisor's channels speak the wire protocols.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any, Self

from aiohttp import web
from aiohttp.test_utils import TestServer
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass(frozen=True)
class Received:
    """One request as it arrived, with the status the receiver answered."""

    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpReceiver:
    """Records POSTs on ``127.0.0.1``; ``fail_first`` answers ``fail_status`` that many
    times, ``hang`` holds each request open until :meth:`release` (or the server closes)."""

    host: str = "127.0.0.1"
    fail_first: int = 0
    fail_status: int = 500
    hang: bool = False
    attempts: list[Received] = field(default_factory=list)
    arrived: int = 0
    _server: TestServer | None = None
    _released: asyncio.Event = field(default_factory=asyncio.Event)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def delivered(self) -> list[Received]:
        """The requests answered 2xx."""
        return [r for r in self.attempts if 200 <= r.status < 300]

    def url(self, path: str = "/", scheme: str = "http") -> str:
        assert self._server is not None, "use `async with HttpReceiver()`"
        return f"{scheme}://{self.host}:{self._server.port}{path}"

    def release(self) -> None:
        self._released.set()

    async def wait_for(self, count: int, *, timeout: float = 10, ok: bool = True) -> list[Received]:
        """The first ``count`` delivered (``ok``) or answered requests; TimeoutError if fewer
        arrive within ``timeout`` seconds."""
        await self._until(lambda: len(self.delivered if ok else self.attempts) >= count, timeout)
        return (self.delivered if ok else self.attempts)[:count]

    async def wait_arrived(self, count: int, *, timeout: float = 10) -> None:
        """Until ``count`` requests have arrived (answered or still hanging)."""
        await self._until(lambda: self.arrived >= count, timeout)

    async def _until(self, done: Callable[[], bool], timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not done():
                self._arrived.clear()
                await self._arrived.wait()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.arrived += 1
        self._arrived.set()
        if self.hang:
            await self._released.wait()
        failing = len(self.attempts) < self.fail_first
        status = self.fail_status if failing else 200
        self.attempts.append(Received(request.path, dict(request.headers), body, status))
        self._arrived.set()
        return web.Response(status=status, text="no" if failing else "ok")

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._server = TestServer(app, host=self.host)
        await self._server.start_server()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()
        assert self._server is not None
        await self._server.close()


@dataclass(frozen=True)
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


class SmtpReceiver:
    """An SMTP server on ``127.0.0.1:port`` that accepts ``user``/``password`` over plain
    text (no TLS, as a local relay would) and keeps every message it is given."""

    def __init__(self, user: str, password: str) -> None:
        self.user, self.password = user, password
        self.port = _free_port()
        self.mails: list[Mail] = []
        self.logins: list[str] = []
        self._lock = threading.Lock()

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (
            data.login.decode(),
            data.password.decode(),
        ) == (self.user, self.password)
        with self._lock:
            self.logins.append(f"{mechanism}:{'ok' if ok else 'refused'}")
        return AuthResult(success=ok)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        with self._lock:
            self.mails.append(Mail(str(envelope.mail_from), list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"

    async def wait_for(self, count: int, *, timeout: float = 15) -> list[Mail]:
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if len(self.mails) >= count:
                    return list(self.mails[:count])
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.mails)} of {count} mails arrived")
            await asyncio.sleep(0.05)

    @contextmanager
    def running(self) -> Iterator[Self]:
        controller = Controller(
            self,
            hostname="127.0.0.1",
            port=self.port,
            authenticator=self.authenticate,
            auth_require_tls=False,
        )
        controller.start()
        try:
            yield self
        finally:
            controller.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
