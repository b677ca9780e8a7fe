"""The seam between the pool and whatever runs its jobs: a worker slot, and the backend that makes slots.

The pool keeps the queue, fairness, limits, admission and estimates; a slot only runs what it is
handed and reports back with the messages of :mod:`.protocol` (``Ready``, ``Heartbeat``,
``JobProgress``, ``JobDone``, ``JobEnded``, ``StartFailed``) through ``on_message``, and its end
through ``on_exit``. A local worker process is one kind of slot; other kinds may run far away.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from ..request import StyleRequest
from .jobs import Job
from .protocol import FromWorker, RunJob

SlotState = Literal["starting", "idle", "busy", "stopping", "dead"]
KillReason = Literal["unresponsive", "timeout", "cancel", "startup", "shutdown"]
Ending = Literal["cancel", "timeout"]

OnMessage = Callable[["WorkerSlot", FromWorker], None]
OnExit = Callable[["WorkerSlot"], None]


@dataclass
class Assignment:
    """A job handed to a slot, and how the pool wants it to end."""

    job: Job
    request: StyleRequest
    started_at: float
    ending: Ending | None = None
    oom_retried: bool = False
    timers: tuple[asyncio.TimerHandle, ...] = ()

    def cancel_timers(self) -> None:
        for timer in self.timers:
            timer.cancel()
        self.timers = ()


class WorkerSlot(ABC):
    """A place that runs up to ``capacity`` jobs at once on one device.

    ``device`` is the torch device the engine runs on there; ``place`` names the memory the
    slot shares with others (admission, load balancing and throughput are kept per place);
    ``node`` names the machine. All three may be refined once the slot is ready.
    """

    capacity = 1

    def __init__(self, slot_id: str, device: str, *, on_message: OnMessage, on_exit: OnExit) -> None:
        self.id = slot_id
        self.device = device
        self.place = device
        self.node = "local"
        self.state: SlotState = "starting"
        self.assignments: dict[str, Assignment] = {}
        self.pid: int | None = None
        self.memory: tuple[int, int] = (0, 0)
        self.started_at = time.monotonic()
        self.last_seen = self.started_at
        self.kill_reason: KillReason | None = None
        self.start_error: str | None = None
        self.was_ready = False
        # Resolves to None once the slot is ready, or to why it could not start.
        self.ready: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._on_message = on_message
        self._on_exit = on_exit

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self.state}>"

    @property
    def free(self) -> int:
        """How many more jobs the slot takes now (0 unless it is serving)."""
        if self.state not in ("idle", "busy"):
            return 0
        return max(0, self.capacity - len(self.assignments))

    @abstractmethod
    def start(self) -> None:
        """Begin starting; ``Ready`` or ``StartFailed`` and an exit follow."""

    @abstractmethod
    def run(self, message: RunJob) -> None:
        """Start a job (or the same job again, smaller, after it ran out of memory); never blocks."""

    @abstractmethod
    def cancel(self, job_id: str) -> None:
        """Ask the running job ``job_id`` to stop at its next evaluation; never blocks."""

    @abstractmethod
    def stop(self) -> None:
        """Exit once the jobs in hand are over."""

    @abstractmethod
    def kill(self, reason: KillReason) -> None:
        """End the slot now; its exit is then reported like any death, with ``reason`` kept."""

    @abstractmethod
    def describe_exit(self) -> str:
        """How the slot ended, in words."""

    @abstractmethod
    def death_message(self) -> str:
        """What to tell the owner of a job this slot died running, for a person."""

    def rerun_lost_jobs(self) -> bool:
        """True when jobs this slot died running were lost with it through no fault of theirs
        (a machine gone), so running them once more elsewhere is the right answer."""
        return False


class SlotBackend(ABC):
    """Decides which slots the pool should keep, and makes them."""

    name: str

    @abstractmethod
    def plan(self) -> Mapping[str, str]:
        """Slot id -> device for every slot the pool should keep running now."""

    @abstractmethod
    def create(self, slot_id: str, *, on_message: OnMessage, on_exit: OnExit) -> WorkerSlot:
        """A new, not yet started slot for ``slot_id`` (one of :meth:`plan`'s keys)."""

    @abstractmethod
    def places(self) -> list[str]:
        """The places stats always list, even with no slot ready there."""

    async def open(self, on_plan_changed: Callable[[], None]) -> None:
        """Get ready to make slots; call ``on_plan_changed`` whenever :meth:`plan` changes later."""

    async def close(self) -> None:
        """Release what :meth:`open` took; every slot has exited by now."""

    def connected(self) -> bool:
        """False while the backend cannot reach where its slots run (then jobs wait)."""
        return True
