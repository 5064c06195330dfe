"""The start-first test stack: the app behind a reverse proxy, and a poller measuring it
from outside, as a user would (issue 15, "zero-downtime mode").

``app`` and ``python_backend`` opt in with ``supervisor.update_order: start-first`` and
publish no host port; ``edge`` (tests/env/images/edge-proxy, nginx resolving ``app``
per request through Docker's DNS) is the only way in. The poller counts every request
that does not come back ``200`` through the proxy, so "zero failed requests" is a
number measured outside the product, not something the run record says.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.compose import APP_STACK_SERVICES, ComposeProject, compose_project
from tests.support.dockercli import docker
from tests.support.testenv import ROOT, StackTestEnv

COMPOSE_DIR = ROOT / "tests" / "env" / "compose"
START_FIRST_FILE = COMPOSE_DIR / "start-first.yml"
# Merged over START_FIRST_FILE: ``app`` publishes a host port too (start-first refused).
PUBLISHED_APP_FILE = COMPOSE_DIR / "start-first-published.yml"


@contextmanager
def start_first_stack(
    testenv: StackTestEnv, app_version: str = "1.0.0", publish_app: bool = False
) -> Iterator[ComposeProject]:
    """The stack up and answering through ``edge``; always torn down."""
    files: tuple[Path, ...] = (START_FIRST_FILE,)
    if publish_app:
        files += (PUBLISHED_APP_FILE,)
    with compose_project(
        testenv, app_version, files=files, wait_for=(*APP_STACK_SERVICES, "edge")
    ) as project:
        deadline = time.monotonic() + 30
        while True:
            try:
                edge_get(project, "/health")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield project


def edge_url(project: ComposeProject) -> str:
    """The proxy's published address on the host."""
    port = docker("port", project.container("edge"), "8080/tcp").splitlines()[0].rsplit(":", 1)[1]
    return f"http://127.0.0.1:{port}"


def edge_get(project: ComposeProject, path: str) -> dict[str, Any]:
    """The JSON answer of ``GET path`` through the proxy (an error status raises)."""
    with urllib.request.urlopen(edge_url(project) + path, timeout=5) as answer:
        data: dict[str, Any] = json.loads(answer.read())
    return data


@dataclass
class PollerStats:
    requests: int = 0
    failures: list[str] = field(default_factory=list)
    # Which version answered, per version: who served while the run went on.
    versions: Counter[str] = field(default_factory=Counter)
    started: float = 0.0
    stopped: float = 0.0
    slowest: float = 0.0
    # (sent at, answered 200) per request, in the order they were sent.
    outcomes: list[tuple[float, bool]] = field(default_factory=list, repr=False)

    @property
    def duration(self) -> float:
        return self.stopped - self.started

    @property
    def downtime(self) -> float:
        """User-visible downtime: from each first failure to the first success sent after
        it (to the end of polling when none came)."""
        total, down_since = 0.0, None
        for sent, ok in sorted(self.outcomes):
            if not ok and down_since is None:
                down_since = sent
            elif ok and down_since is not None:
                total += sent - down_since
                down_since = None
        if down_since is not None:
            total += self.stopped - down_since
        return total

    def summary(self) -> str:
        per_version = ", ".join(f"{v}: {n}" for v, n in sorted(self.versions.items()))
        return (
            f"poller: {self.requests} requests in {self.duration:.1f} s "
            f"({self.requests / max(self.duration, 1e-9):.1f}/s), {len(self.failures)} failed, "
            f"downtime {self.downtime:.2f} s, slowest {self.slowest * 1000:.0f} ms; "
            f"answered by {per_version}"
        )


class EdgePoller:
    """``GET /health`` through the proxy every ``interval`` seconds, whatever the answers
    take: each request is sent on time from a pool (as users keep arriving while one
    waits), so a slow answer never thins the sampling out.

    ``/health`` and not ``/version``: it reaches the database, so it also fails when the
    version serving cannot work with the schema it finds (what "compatible" promises).
    Every answer other than ``200``, every connection error and every timeout is a
    failure, recorded with its time.
    """

    def __init__(self, url: str, interval: float = 0.05, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/") + "/health"
        self.interval, self.timeout = interval, timeout
        self.stats = PollerStats()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="edge-poll")
        self._thread = threading.Thread(target=self._run, name="edge-poller", daemon=True)

    def _once(self) -> None:
        began = time.monotonic()
        problem = None
        version = "?"
        try:
            with urllib.request.urlopen(self.url, timeout=self.timeout) as answer:
                version = str(json.loads(answer.read()).get("version"))
        except urllib.error.HTTPError as err:
            # Who answered it and why: the addresses tried (the edge proxy's X-Upstream)
            # and the start of the body (the app says what its health check missed).
            body = err.read(200).decode("utf-8", "replace").strip()
            problem = (
                f"status {err.code} {err.reason} from {err.headers.get('X-Upstream', '?')}: "
                f"{body!r}"
            )
        except (OSError, ValueError) as err:
            problem = f"{type(err).__name__}: {err}"
        elapsed = time.monotonic() - began
        with self._lock:
            stats = self.stats
            stats.requests += 1
            stats.slowest = max(stats.slowest, elapsed)
            stats.outcomes.append((began, problem is None))
            if problem is None:
                stats.versions[version] += 1
            else:
                stats.failures.append(f"{time.time():.3f} after {elapsed * 1000:.0f} ms: {problem}")

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            self._pool.submit(self._once)
            # On time, or from now when this thread was held up: never a catch-up burst.
            next_at = max(next_at + self.interval, time.monotonic())
            self._stop.wait(next_at - time.monotonic())

    def __enter__(self) -> EdgePoller:
        self.stats.started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._pool.shutdown(wait=True)  # every request sent is counted
        self.stats.stopped = time.monotonic()
