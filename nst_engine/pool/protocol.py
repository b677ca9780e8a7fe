"""Messages between the pool and a worker process. Plain dataclasses, so they pickle over a pipe."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..request import Progress, StyleRequest, StyleResult

# Pool -> worker


@dataclass(frozen=True)
class RunJob:
    job_id: str
    request: StyleRequest
    preview_size: int | None
    progress_every: int
    progress_interval_s: float
    preview_interval_s: float


@dataclass(frozen=True)
class CancelJob:
    job_id: str


@dataclass(frozen=True)
class Stop:
    """Finish nothing more and exit."""


# Worker -> pool


@dataclass(frozen=True)
class Ready:
    pid: int
    memory_used: int
    memory_total: int


@dataclass(frozen=True)
class StartFailed:
    message: str


@dataclass(frozen=True)
class Heartbeat:
    """Sent from a thread of its own, so a long evaluation never looks like a hang."""

    memory_used: int
    memory_total: int


@dataclass(frozen=True)
class JobProgress:
    job_id: str
    progress: Progress


@dataclass(frozen=True)
class JobDone:
    job_id: str
    result: StyleResult


EndKind = Literal["cancelled", "oom", "failed"]


@dataclass(frozen=True)
class JobEnded:
    """The job stopped without a result; ``message`` is for a person. A ``retiring`` worker
    exits next, so the pool must not give it another job."""

    job_id: str
    kind: EndKind
    message: str
    retiring: bool = False


ToWorker = RunJob | CancelJob | Stop
FromWorker = Ready | StartFailed | Heartbeat | JobProgress | JobDone | JobEnded
