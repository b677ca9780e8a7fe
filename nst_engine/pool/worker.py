"""The worker process: loads VGG19 once on its device, then runs jobs sent over a pipe.

Three threads: the main one runs jobs; a listener reads the pipe, so a cancel reaches a
running job at its next evaluation; a heartbeat thread tells the pool the process is alive
(and how much memory it holds) even while one evaluation takes long.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection

from ..errors import Cancelled, EngineError, OutOfMemory
from ..request import Progress
from .batching import serve_batches
from .devices import device_type, host_memory_bytes, resident_bytes
from .protocol import (
    CancelJob,
    FromWorker,
    Heartbeat,
    JobDone,
    JobEnded,
    JobProgress,
    Ready,
    RunJob,
    StartFailed,
    Stop,
)
from .throttle import ProgressThrottle

log = logging.getLogger("nst_engine.pool.worker")

MemoryReader = Callable[[], tuple[int, int]]


class _Outbox:
    """The pipe's sending end, shared by the job and heartbeat threads."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._lock = threading.Lock()

    def send(self, message: FromWorker) -> bool:
        with self._lock:
            try:
                self._connection.send(message)
            except (OSError, ValueError):
                return False
        return True


class _Cancellations:
    """Which jobs the pool asked to stop; sets a running job's event when it is among them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requested: set[str] = set()
        self._current: dict[str, threading.Event] = {}

    def request(self, job_id: str) -> None:
        with self._lock:
            self._requested.add(job_id)
            if job_id in self._current:
                self._current[job_id].set()

    def cancel_current(self) -> None:
        with self._lock:
            for event in self._current.values():
                event.set()

    def begin(self, job_id: str) -> threading.Event:
        event = threading.Event()
        with self._lock:
            self._current[job_id] = event
            if job_id in self._requested:
                event.set()
        return event

    def end(self, job_id: str) -> None:
        with self._lock:
            self._current.pop(job_id, None)
            self._requested.discard(job_id)


def run_worker(
    connection: Connection,
    device: str,
    weights: str,
    threads: int,
    heartbeat_interval_s: float,
    max_batch: int = 1,
    shape_multiple: int = 1,
) -> None:
    """Entry point of a worker process (started with the spawn method); ``max_batch`` above 1
    runs up to that many jobs at once, batched by shape. On a GPU, with jobs' sides rounded to
    ``shape_multiple`` (above 1), the common shapes are warmed up before the worker says it is ready."""
    # Ctrl-C in a terminal reaches the whole process group; the pool, not the keyboard, ends workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s worker[{device} pid {os.getpid()}] %(message)s")
    outbox = _Outbox(connection)
    try:
        import torch

        torch.set_num_threads(threads)
        memory = _memory_reader(device)
        stopped = threading.Event()
        threading.Thread(
            target=_beat, args=(outbox, memory, heartbeat_interval_s, stopped), name="heartbeat", daemon=True
        ).start()

        from ..request import StyleRequest
        from ..vgg import load_vgg19

        # The network jobs with the default settings use, so the first of them finds it ready.
        load_vgg19(weights, device=device, pooling=StyleRequest.pooling, padding=StyleRequest.padding)
        if device_type(device) == "cuda" and shape_multiple > 1:
            _warm_up(device, shape_multiple, weights)
        used, total = memory()
    except Exception as exc:  # anything here means this worker cannot serve; say why and exit
        log.exception("could not start")
        outbox.send(StartFailed(_start_failure_message(device, exc)))
        return

    jobs: queue.Queue[RunJob | Stop] = queue.Queue()
    cancellations = _Cancellations()
    threading.Thread(target=_listen, args=(connection, jobs, cancellations), name="listener", daemon=True).start()
    outbox.send(Ready(pid=os.getpid(), memory_used=used, memory_total=total))
    if max_batch > 1:
        serve_batches(jobs, device, outbox.send, cancellations.begin, cancellations.end)
    else:
        while not isinstance(message := jobs.get(), Stop):
            if not _run_job(message, device, outbox, cancellations):
                log.error("exiting after an unexpected error; the pool starts a fresh worker")
                break
    stopped.set()


def _warm_up(device: str, shape_multiple: int, weights: str) -> None:
    """Tune cuDNN for the common shapes, so their first jobs are not slow; a failure only costs speed."""
    from ..warmup import preset_scale_sizes, warm_up

    try:
        shapes = warm_up(device, preset_scale_sizes(), shape_multiple, weights)
    except Exception:
        log.warning("warming up failed; the first job of each shape will be slower", exc_info=True)
    else:
        log.info("warmed up %d shapes", len(shapes))


def _listen(connection: Connection, jobs: queue.Queue[RunJob | Stop], cancellations: _Cancellations) -> None:
    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):
            # The pool is gone: stop the job in hand and exit rather than linger as an orphan.
            cancellations.cancel_current()
            jobs.put(Stop())
            return
        if isinstance(message, CancelJob):
            cancellations.request(message.job_id)
        else:
            jobs.put(message)
            if isinstance(message, Stop):
                return


def _run_job(job: RunJob, device: str, outbox: _Outbox, cancellations: _Cancellations) -> bool:
    """Run one job and report how it ended; False when the process may be left in a bad state."""
    from ..transfer import stylize

    cancel = cancellations.begin(job.job_id)
    throttle = ProgressThrottle(job.progress_interval_s, job.preview_interval_s)

    def report(progress: Progress) -> None:
        admitted = throttle.admit(progress)
        if admitted is not None:
            outbox.send(JobProgress(job.job_id, admitted))

    healthy = True
    outcome: JobDone | JobEnded
    try:
        if cancel.is_set():
            raise Cancelled("The job was cancelled before it started.")
        result = stylize(
            job.request,
            device=device,
            on_progress=report,
            progress_every=job.progress_every,
            preview_size=job.preview_size,
            cancel=cancel,
            gate=throttle,
        )
        outcome = JobDone(job.job_id, result)
    except Cancelled as exc:
        outcome = JobEnded(job.job_id, "cancelled", str(exc) or "The job was cancelled.")
    except EngineError as exc:
        outcome = JobEnded(job.job_id, "oom" if isinstance(exc, OutOfMemory) else "failed", str(exc))
    except Exception as exc:
        # Not an error the engine meant to raise: the process (host memory, CUDA context,
        # interpreter) may be damaged, so it reports the failure and makes way for a new one.
        log.error("unexpected error in job %s:\n%s", job.job_id, traceback.format_exc())
        outcome = JobEnded(job.job_id, "failed", _unexpected_failure_message(exc), retiring=True)
        healthy = False
    # Forget this run before reporting its end: the pool may answer an out-of-memory report by
    # sending the same job again, and a cancel for that retry must not be dropped with this run.
    cancellations.end(job.job_id)
    outbox.send(outcome)
    return healthy


def _unexpected_failure_message(exc: Exception) -> str:
    if isinstance(exc, MemoryError):
        return "The worker ran out of host memory for this job; try a smaller size."
    return f"The renderer hit an unexpected error ({type(exc).__name__}); please try again."


def _memory_reader(device: str) -> MemoryReader:
    """A function returning (used, total) bytes: the GPU's as a whole, or this process's RSS and host RAM."""
    if device_type(device) == "cuda":
        import torch

        index = torch.device(device).index or 0

        def cuda_memory() -> tuple[int, int]:
            free, total = torch.cuda.mem_get_info(index)
            return total - free, total

        return cuda_memory
    total = host_memory_bytes()
    return lambda: (resident_bytes(), total)


def _beat(outbox: _Outbox, memory: MemoryReader, interval_s: float, stopped: threading.Event) -> None:
    while not stopped.wait(interval_s):
        try:
            used, total = memory()
        except Exception:
            used, total = 0, 0
        if not outbox.send(Heartbeat(used, total)):
            return


def _start_failure_message(device: str, exc: Exception) -> str:
    if isinstance(exc, EngineError):
        return str(exc)
    return f"The worker for {device} could not start ({type(exc).__name__}: {exc})."
