"""Background jobs for the API's long operations that are not update runs.

A manual snapshot or an HTTP restore can take many minutes, so ``POST`` answers 202 with a job
id at once and the job runs as a task owned by this registry; ``GET /admin/jobs/{id}`` reports
it. One job of a kind at a time (two restores racing each other would leave an undefined
database). The registry is created and closed through the app's ``cleanup_ctx``: shutdown
cancels what still runs, so no task outlives the server.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Literal

from supervisor.exceptions import NotFound, SupervisorError

from .errors import JobRunning, envelope, error_envelope
from .schemas import ErrorEnvelope, Job

_LOGGER = logging.getLogger(__name__)
KEEP_FINISHED = 50

JobKind = Literal["snapshot", "restore"]


class JobRegistry:
    def __init__(self) -> None:
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, kind: JobKind, work: Callable[[], Awaitable[dict[str, Any]]]) -> Job:
        if any(job.kind == kind and job.state == "running" for job in self._jobs.values()):
            raise JobRunning(f"a {kind} job is already running; wait for it to finish")
        job = Job(
            job_id=secrets.token_hex(6), kind=kind, state="running", started_at=datetime.now(UTC)
        )
        self._jobs[job.job_id] = job
        self._tasks[job.job_id] = asyncio.create_task(self._run(job, work), name=f"job {kind}")
        self._forget_old()
        return job

    def get(self, job_id: str) -> Job:
        try:
            return self._jobs[job_id]
        except KeyError:
            raise NotFound(f"no job with id {job_id[:64]!r}") from None

    async def _run(self, job: Job, work: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        try:
            result = await work()
        except SupervisorError as err:
            _LOGGER.warning("%s job %s failed: %s", job.kind, job.job_id, err.message)
            self._finish(job, error=ErrorEnvelope(**error_envelope(err)))
        except Exception:
            _LOGGER.exception("%s job %s failed unexpectedly", job.kind, job.job_id)
            error = envelope("internal_error", "internal error; see the supervisor log")
            self._finish(job, error=ErrorEnvelope(**error))
        else:
            self._finish(job, result=result)
        finally:
            self._tasks.pop(job.job_id, None)

    def _finish(
        self,
        job: Job,
        result: dict[str, Any] | None = None,
        error: ErrorEnvelope | None = None,
    ) -> None:
        self._jobs[job.job_id] = job.model_copy(
            update={
                "state": "failed" if error else "completed",
                "finished_at": datetime.now(UTC),
                "result": result,
                "error": error,
            }
        )

    def _forget_old(self) -> None:
        finished = [key for key, job in self._jobs.items() if job.state != "running"]
        for key in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            del self._jobs[key]

    async def close(self) -> None:
        """Cancel running jobs and wait for them (shutdown)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
