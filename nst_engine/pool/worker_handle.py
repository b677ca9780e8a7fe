"""The pool's side of one worker process: starting it, talking to it, noticing its death.

Pipes are read and written by two threads per worker, so the event loop never blocks on a
slow or frozen worker; what they receive is handed to the loop with call_soon_threadsafe.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Literal

from ..request import StyleRequest
from .jobs import Job
from .protocol import FromWorker, Stop, ToWorker
from .worker import run_worker

log = logging.getLogger("nst_engine.pool")

WorkerState = Literal["starting", "idle", "busy", "stopping", "dead"]
KillReason = Literal["unresponsive", "timeout", "cancel", "startup", "shutdown"]
Ending = Literal["cancel", "timeout"]

_CLOSE = object()


@dataclass
class Assignment:
    """A job handed to a worker, and how the pool wants it to end."""

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


class WorkerHandle:
    """One worker process bound to one device."""

    def __init__(
        self,
        worker_id: str,
        device: str,
        *,
        weights: str,
        threads: int,
        heartbeat_interval_s: float,
        on_message: Callable[[WorkerHandle, FromWorker], None],
        on_exit: Callable[[WorkerHandle], None],
    ) -> None:
        self.id = worker_id
        self.device = device
        self.state: WorkerState = "starting"
        self.assignment: Assignment | None = None
        self.pid: int | None = None
        self.memory: tuple[int, int] = (0, 0)
        self.started_at = time.monotonic()
        self.last_seen = self.started_at
        self.exitcode: int | None = None
        self.kill_reason: KillReason | None = None
        self.start_error: str | None = None
        self.was_ready = False
        # Resolves to None once the worker is ready, or to why it could not start.
        self.ready: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._weights = weights
        self._threads = threads
        self._heartbeat_interval_s = heartbeat_interval_s
        self._on_message = on_message
        self._on_exit = on_exit
        self._loop = asyncio.get_running_loop()
        self._outbox: queue.Queue[object] = queue.Queue()
        self._process: multiprocessing.process.BaseProcess | None = None

    def __repr__(self) -> str:
        return f"<Worker {self.id} pid={self.pid} {self.state}>"

    def start(self) -> None:
        """Spawn the process and the two pipe threads."""
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe(duplex=True)
        self._process = context.Process(
            target=run_worker,
            args=(theirs, self.device, self._weights, self._threads, self._heartbeat_interval_s),
            name=f"nst-worker-{self.id}",
            daemon=True,
        )
        self._process.start()
        self.pid = self._process.pid
        # Only the child may hold its end open, or its death would never read as EOF here.
        theirs.close()
        writer = threading.Thread(target=self._write, args=(ours,), name=f"{self.id}-writer", daemon=True)
        writer.start()
        threading.Thread(target=self._read, args=(ours, writer), name=f"{self.id}-reader", daemon=True).start()

    def send(self, message: ToWorker) -> None:
        """Queue a message for the worker; never blocks."""
        self._outbox.put(message)

    def stop(self) -> None:
        """Ask the worker to exit once its current job is over."""
        if self.state not in ("dead", "stopping"):
            self.state = "stopping"
            self.send(Stop())

    def kill(self, reason: KillReason) -> None:
        """SIGKILL the process; its exit is then reported like any death, with ``reason`` kept."""
        if self.state == "dead" or self._process is None:
            return
        if self.kill_reason is None:
            self.kill_reason = reason
        log.warning("killing worker %s (pid %s): %s", self.id, self.pid, reason)
        self._process.kill()

    def describe_exit(self) -> str:
        """How the process ended, in words."""
        code = self.exitcode
        if code is None:
            return "it stopped for an unknown reason"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"it was killed by {name}"
        return f"it exited with code {code}"

    def _read(self, connection: Connection, writer: threading.Thread) -> None:
        while True:
            try:
                message = connection.recv()
            except (EOFError, OSError):
                break
            except Exception:
                log.exception("unreadable message from worker %s; killing it", self.id)
                self._process.kill()
                break
            if not self._post(self._on_message, self, message):
                break
        self._process.join()
        self._outbox.put(_CLOSE)
        writer.join()
        connection.close()
        self.exitcode = self._process.exitcode
        self._post(self._died)

    def _write(self, connection: Connection) -> None:
        while (message := self._outbox.get()) is not _CLOSE:
            try:
                connection.send(message)
            except (OSError, ValueError):
                return

    def _died(self) -> None:
        self.state = "dead"
        self._on_exit(self)

    def _post(self, callback: Callable[..., None], *args: object) -> bool:
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            return False
        return True
