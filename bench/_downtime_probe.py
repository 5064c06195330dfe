"""The downtime benchmark's instruments: what a user sees, what the engine says, what is pulled.

* :class:`Poller` asks the app's *published* ``/health`` every 50 ms for the whole run
  and keeps every answer; :func:`outages` turns a time window of them into user-visible
  downtime (first failure → first success after it).
* :class:`EngineEvents` follows ``docker events`` (the engine's own clock, nanoseconds),
  so the moment a health gate *could* have known (first ``unhealthy`` or exit of a new
  container) is a fact from the engine, not a guess from the sidecar's logs.
* :func:`registry_blob_bytes` reads the registry's access log: bytes of blobs served for
  one repository in a window, the proof of "no re-pull" that an engine event cannot
  give (a pull of an image already present is a manifest GET and no blob).

Everything here runs on the host and talks to the engine on its socket, never through
the docker-proxy (that is the product's road, see tests/support/dockercli.py).
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.support.dockercli import ENGINE_SOCKET, docker

ROOT = Path(__file__).resolve().parents[1]

NEW_CONTAINER_SIGNALS = ("health_status: unhealthy", "die")


@dataclass(frozen=True)
class Sample:
    at: float  # Unix time the request was sent
    ok: bool
    detail: str = ""


class Poller:
    """GET ``url`` every ``interval`` seconds in a thread; a non-200 or an error is a failure."""

    def __init__(self, url: str, interval: float = 0.05, timeout: float = 2.0) -> None:
        self.url = url
        self.interval = interval
        self.timeout = timeout
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="poller", daemon=True)
        self._lock = threading.Lock()

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            sent = time.time()
            try:
                with urllib.request.urlopen(self.url, timeout=self.timeout) as reply:  # noqa: S310
                    reply.read()
                    sample = Sample(sent, reply.status == 200, str(reply.status))
            except urllib.error.HTTPError as err:
                sample = Sample(sent, False, str(err.code))
            except Exception as err:
                sample = Sample(sent, False, type(err).__name__)
            with self._lock:
                self.samples.append(sample)
            self._stop.wait(max(0.0, sent + self.interval - time.time()))

    def window(self, start: float, end: float) -> list[Sample]:
        with self._lock:
            return [s for s in self.samples if start <= s.at <= end]

    def first_success_after(self, moment: float, deadline: float) -> float | None:
        """When the first request sent after ``moment`` succeeded (waits up to ``deadline``)."""
        while True:
            with self._lock:
                hits = [s.at for s in self.samples if s.at > moment and s.ok]
            if hits:
                return hits[0]
            if time.time() > deadline:
                return None
            time.sleep(self.interval)

    def wait_answering(self, after: float, timeout: float = 180) -> float:
        found = self.first_success_after(after, time.time() + timeout)
        if found is None:
            raise RuntimeError(f"{self.url} did not answer 200 within {timeout} s")
        return found


@dataclass
class Outage:
    start: float
    end: float | None  # None: still failing when the window closed

    @property
    def seconds(self) -> float:
        return (self.end if self.end is not None else self.start) - self.start


@dataclass
class Downtime:
    """User-visible downtime in one window: the outages and the failed requests."""

    outages: list[Outage] = field(default_factory=list)
    failed: int = 0
    requests: int = 0
    open_at_end: bool = False

    @property
    def total(self) -> float:
        return sum(o.seconds for o in self.outages)

    @property
    def longest(self) -> float:
        return max((o.seconds for o in self.outages), default=0.0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "total_s": round(self.total, 3),
            "longest_s": round(self.longest, 3),
            "outages": len(self.outages),
            "failed_requests": self.failed,
            "requests": self.requests,
            "still_failing_at_end": self.open_at_end,
        }


def outages(samples: list[Sample], window_end: float | None = None) -> Downtime:
    """Downtime = from the first failed request to the first successful one after it."""
    result = Downtime(requests=len(samples))
    current: Outage | None = None
    for sample in samples:
        if not sample.ok:
            result.failed += 1
            if current is None:
                current = Outage(sample.at, None)
        elif current is not None:
            current.end = sample.at
            result.outages.append(current)
            current = None
    if current is not None:
        current.end = window_end if window_end is not None else samples[-1].at
        result.outages.append(current)
        result.open_at_end = True
    return result


@dataclass(frozen=True)
class EngineEvent:
    at: float  # the engine's timestamp (Unix seconds)
    type: str
    action: str
    actor: str
    attributes: dict[str, str]


class EngineEvents:
    """``docker events`` (all of the engine's) in a background process; filtered in Python."""

    def __init__(self) -> None:
        self.events: list[EngineEvent] = []
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> EngineEvents:
        self._proc = subprocess.Popen(
            ["docker", "-H", ENGINE_SOCKET, "events", "--format", "{{json .}}"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        self._thread = threading.Thread(target=self._read, name="events", daemon=True)
        self._thread.start()
        time.sleep(0.3)  # the CLI subscribes before the first thing we measure happens
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _read(self) -> None:
        assert self._proc is not None
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            try:
                raw = json.loads(line)
            except ValueError:
                continue
            actor = raw.get("Actor") or {}
            event = EngineEvent(
                at=int(raw.get("timeNano") or 0) / 1e9,
                type=str(raw.get("Type", "")),
                action=str(raw.get("Action", "")),
                actor=str(actor.get("ID", "")),
                attributes={k: str(v) for k, v in (actor.get("Attributes") or {}).items()},
            )
            with self._lock:
                self.events.append(event)

    def matching(self, keep: Callable[[EngineEvent], bool]) -> list[EngineEvent]:
        with self._lock:
            return [e for e in self.events if keep(e)]

    def first_bad_signal(
        self, is_new: Callable[[EngineEvent], bool], since: float, timeout: float = 0
    ) -> EngineEvent | None:
        """The first ``unhealthy`` or exit of a container ``is_new`` accepts, after ``since``."""
        deadline = time.time() + timeout
        while True:
            hits = self.matching(
                lambda e: e.type == "container" and e.at >= since
                and e.action in NEW_CONTAINER_SIGNALS and is_new(e)
            )  # fmt: skip
            if hits or time.time() >= deadline:
                return min(hits, key=lambda e: e.at) if hits else None
            time.sleep(0.02)

    def pulls(self, start: float, end: float) -> list[EngineEvent]:
        return self.matching(lambda e: e.type == "image" and e.action == "pull"
                             and start <= e.at <= end)  # fmt: skip


_ACCESS = re.compile(
    r'\[(?P<when>[^\]]+)\] "(?P<method>[A-Z]+) (?P<path>\S+) [^"]*" '
    r"(?P<status>\d{3}) (?P<bytes>\d+|-)"
)


def registry_blob_bytes(
    registry_container: str, repository: str, start: float, end: float
) -> dict[str, int]:
    """Blob GETs (and their bytes) and manifest GETs the registry served for ``repository``
    between ``start`` and ``end`` (its access log has one-second resolution, so the window
    is widened by a second on each side: it can only over-count)."""
    proc = subprocess.run(
        ["docker", "-H", ENGINE_SOCKET, "logs", "--since", f"{start - 1:.0f}",
         "--until", f"{end + 1:.0f}", registry_container],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    counts = {"blob_gets": 0, "blob_bytes": 0, "manifest_gets": 0}
    for line in (proc.stdout + proc.stderr).splitlines():
        match = _ACCESS.search(line)
        if not match or match["method"] != "GET" or f"/v2/{repository}/" not in match["path"]:
            continue
        if "/blobs/" in match["path"]:
            counts["blob_gets"] += 1
            counts["blob_bytes"] += 0 if match["bytes"] == "-" else int(match["bytes"])
        elif "/manifests/" in match["path"]:
            counts["manifest_gets"] += 1
    return counts


def iso_to_unix(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC).timestamp()


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    mem_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    compose = subprocess.run(
        ["docker-compose", "version", "--short"], capture_output=True, text=True, check=False
    ).stdout.strip()
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "ram_gib": round(mem_kb / 2**20, 1),
        "kernel": platform.release(),
        "docker": docker("version", "--format", "{{.Server.Version}}").strip(),
        "compose": f"docker-compose {compose}" if compose else "?",
        "python": platform.python_version(),
        "load_at_start": load(),
        "code": code_state(),
    }


def code_state() -> dict[str, Any]:
    """The commit measured and the files of supervisor/ that differ from it (the image is
    built from the working tree)."""

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True,
                              text=True, check=False).stdout.rstrip()  # fmt: skip

    return {
        "revision": git("rev-parse", "--short", "HEAD"),
        "changed_in_supervisor": git("status", "--short", "--", "supervisor").splitlines(),
    }
