"""The caller's handle on one submitted job, and the updates it streams."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Literal

from ..request import Progress, StyleRequest, StyleResult
from .errors import JobCancelled, JobFailed

JobState = Literal["queued", "running", "done", "failed", "cancelled"]
UpdateKind = Literal["queued", "started", "progress", "finished", "failed", "cancelled"]

FINAL_KINDS: frozenset[str] = frozenset({"finished", "failed", "cancelled"})


@dataclass(frozen=True)
class JobUpdate:
    """One step in a job's life.

    ``queued`` repeats whenever the job's place in the queue changes; ``progress`` carries
    the iteration, loss terms and sometimes a preview; the last update is always one of
    ``finished``, ``failed`` (with ``error``) or ``cancelled``.
    """

    kind: UpdateKind
    position: int
    eta: float | None
    progress: Progress | None = None
    error: str | None = None
    device: str | None = None


class Job:
    """A job in the pool: where it stands, its updates, its result, and a way to cancel it.

    Created by the pool; the methods starting with an underscore are the pool's side.
    """

    def __init__(
        self,
        job_id: str,
        owner: str,
        request: StyleRequest,
        preview_size: int | None,
        *,
        cancel: Callable[[Job], bool],
        position: Callable[[Job], int],
        eta: Callable[[Job], float | None],
    ) -> None:
        self.id = job_id
        self.owner = owner
        self.request = request
        self.preview_size = preview_size
        self.state: JobState = "queued"
        self.device: str | None = None
        self.worker_id: str | None = None
        self.started_at: float | None = None
        self.last_progress: Progress | None = None
        self._cancel = cancel
        self._position = position
        self._eta = eta
        self._subscribers: list[asyncio.Queue[JobUpdate]] = []
        self._done = asyncio.Event()
        self._result: StyleResult | None = None
        self._error: str | None = None

    def __repr__(self) -> str:
        return f"<Job {self.id} owner={self.owner!r} state={self.state}>"

    @property
    def position(self) -> int:
        """Place in the queue, 1 for next; 0 once running or ended."""
        return self._position(self) if self.state == "queued" else 0

    @property
    def eta(self) -> float | None:
        """Estimated seconds until the job ends, from measured throughput; None while unknown."""
        if self.state in ("queued", "running"):
            return self._eta(self)
        return 0.0

    @property
    def error(self) -> str | None:
        """Why the job failed, for a person; None unless ``state == "failed"``."""
        return self._error

    def cancel(self) -> bool:
        """Cancel the job. True if it was queued or running: it will end as ``cancelled``."""
        if self.state not in ("queued", "running"):
            return False
        return self._cancel(self)

    async def result(self) -> StyleResult:
        """Wait for the job to end; raise JobFailed or JobCancelled when it did not finish."""
        await self._done.wait()
        if self.state == "done":
            assert self._result is not None
            return self._result
        if self.state == "cancelled":
            raise JobCancelled()
        raise JobFailed(self._error or "The job failed.")

    async def wait(self) -> JobState:
        """Wait for the job to end, whatever the outcome, and return its final state."""
        await self._done.wait()
        return self.state

    async def updates(self) -> AsyncIterator[JobUpdate]:
        """The current state first, then every update until the final one."""
        inbox: asyncio.Queue[JobUpdate] = asyncio.Queue()
        inbox.put_nowait(self._snapshot())
        if not self._done.is_set():
            self._subscribers.append(inbox)
        try:
            while True:
                update = await inbox.get()
                yield update
                if update.kind in FINAL_KINDS:
                    return
        finally:
            if inbox in self._subscribers:
                self._subscribers.remove(inbox)

    def _snapshot(self) -> JobUpdate:
        if self.state == "queued":
            return JobUpdate("queued", self.position, self.eta)
        if self.state == "running":
            return JobUpdate("started", 0, self.eta, progress=self.last_progress, device=self.device)
        kind: UpdateKind = {"done": "finished", "failed": "failed", "cancelled": "cancelled"}[self.state]
        return JobUpdate(kind, 0, 0.0, error=self._error, device=self.device)

    def _publish(self, update: JobUpdate) -> None:
        for inbox in self._subscribers:
            inbox.put_nowait(update)

    def _queued(self, position: int) -> None:
        self._publish(JobUpdate("queued", position, self.eta))

    def _started(self, device: str, worker_id: str) -> None:
        self.state = "running"
        self.device = device
        self.worker_id = worker_id
        self.started_at = time.monotonic()
        self._publish(JobUpdate("started", 0, self.eta, device=device))

    def _requeued(self) -> None:
        """Back in the queue after its worker was lost; the pool then publishes its place."""
        self.state = "queued"
        self.device = self.worker_id = None
        self.started_at = None
        self.last_progress = None

    def _progress(self, progress: Progress) -> None:
        self.last_progress = progress
        self._publish(JobUpdate("progress", 0, self.eta, progress=progress, device=self.device))

    def _finished(self, result: StyleResult) -> None:
        self._result = result
        self._end("done")

    def _failed(self, message: str) -> None:
        self._error = message
        self._end("failed")

    def _cancelled(self) -> None:
        self._end("cancelled")

    def _end(self, state: JobState) -> None:
        assert not self._done.is_set(), f"{self!r} ended twice"
        self.state = state
        self._publish(self._snapshot())
        self._subscribers.clear()
        self._done.set()
