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
from collections.abc import Callable, Mapping
from multiprocessing.connection import Connection

from .devices import detect_devices, device_type, threads_per_worker
from .protocol import CancelJob, RunJob, Stop, ToWorker
from .slot import KillReason, OnExit, OnMessage, SlotBackend, WorkerSlot
from .worker import run_worker

log = logging.getLogger("nst_engine.pool")

_CLOSE = object()


class WorkerHandle(WorkerSlot):
    """One worker process bound to one device, running up to ``max_batch`` jobs at a time."""

    def __init__(
        self,
        worker_id: str,
        device: str,
        *,
        weights: str,
        threads: int,
        heartbeat_interval_s: float,
        on_message: OnMessage,
        on_exit: OnExit,
        max_batch: int = 1,
        shape_multiple: int = 1,
    ) -> None:
        super().__init__(worker_id, device, on_message=on_message, on_exit=on_exit)
        self.capacity = max_batch
        self._shape_multiple = shape_multiple
        self.exitcode: int | None = None
        self._weights = weights
        self._threads = threads
        self._heartbeat_interval_s = heartbeat_interval_s
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
            args=(
                theirs,
                self.device,
                self._weights,
                self._threads,
                self._heartbeat_interval_s,
                self.capacity,
                self._shape_multiple,
            ),
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

    def run(self, message: RunJob) -> None:
        self._send(message)

    def cancel(self, job_id: str) -> None:
        self._send(CancelJob(job_id))

    def _send(self, message: ToWorker) -> None:
        self._outbox.put(message)

    def stop(self) -> None:
        """Ask the worker to exit once its current job is over."""
        if self.state not in ("dead", "stopping"):
            self.state = "stopping"
            self._send(Stop())

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

    def death_message(self) -> str:
        if self.kill_reason == "unresponsive":
            return "The worker stopped responding while running your job and was restarted; please try again."
        hint = ""
        if self.kill_reason is None and self.exitcode == -signal.SIGKILL:
            hint = ", often a sign that the machine ran out of memory"
        return f"The worker crashed while running your job ({self.describe_exit()}{hint}); please try again."

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


class LocalBackend(SlotBackend):
    """Worker processes on this machine: ``workers_per_device`` on each device."""

    name = "local"

    def __init__(
        self,
        devices: tuple[str, ...],
        *,
        workers_per_device: int,
        weights: str,
        cpu_threads: int | None,
        heartbeat_interval_s: float,
        max_batch: int = 1,
        shape_multiple: int = 1,
    ) -> None:
        for device in devices:
            device_type(device)
        self.devices = devices
        self._plan = {f"{device}/{slot}": device for device in devices for slot in range(workers_per_device)}
        self._weights = weights
        self._threads = threads_per_worker(devices, workers_per_device, cpu_threads)
        self._heartbeat_interval_s = heartbeat_interval_s
        self._max_batch = max_batch
        self._shape_multiple = shape_multiple

    @classmethod
    async def detect(
        cls,
        devices: tuple[str, ...] | None,
        *,
        workers_per_device: int,
        weights: str,
        cpu_threads: int | None,
        heartbeat_interval_s: float,
        max_batch: int = 1,
        shape_multiple: int = 1,
    ) -> LocalBackend:
        """A backend on ``devices``, or on every device found here when that is None."""
        found = devices or await asyncio.to_thread(detect_devices)
        return cls(
            tuple(found),
            workers_per_device=workers_per_device,
            weights=weights,
            cpu_threads=cpu_threads,
            heartbeat_interval_s=heartbeat_interval_s,
            max_batch=max_batch,
            shape_multiple=shape_multiple,
        )

    def plan(self) -> Mapping[str, str]:
        return self._plan

    def places(self) -> list[str]:
        return list(self.devices)

    def create(self, slot_id: str, *, on_message: OnMessage, on_exit: OnExit) -> WorkerHandle:
        return WorkerHandle(
            slot_id,
            self._plan[slot_id],
            weights=self._weights,
            threads=self._threads,
            heartbeat_interval_s=self._heartbeat_interval_s,
            on_message=on_message,
            on_exit=on_exit,
            max_batch=self._max_batch,
            shape_multiple=self._shape_multiple,
        )
