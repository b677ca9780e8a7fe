"""The Ray actor behind a ray worker slot: a warm VGG19 on one device of one node.

It runs the same job code as a local worker process: one job at a time (:func:`.worker._run_job`),
or with ``max_batch`` above 1 up to that many at once in batches (:func:`.batching.serve_batches`,
in a thread of its own that takes the jobs ``run`` hands it). What that code sends, ``run`` yields
from a generator, each job's messages to its own call, so progress streams back while the job
runs. The actor is threaded: ``heartbeat`` and ``cancel`` are answered while ``run`` is busy.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from .batching import serve_batches
from .protocol import FromWorker, JobDone, JobEnded, RunJob, StartFailed, Stop
from .worker import _Cancellations, _memory_reader, _run_job, _start_failure_message

log = logging.getLogger("nst_engine.pool.ray_actor")

_RETIRED = "The worker retired after an unexpected error; please try again."


def actor_concurrency(max_batch: int) -> int:
    """Calls an actor answers at once: ``max_batch`` runs, heartbeat and cancel, and room for a
    second heartbeat while one is slow."""
    return max_batch + 3


@dataclass(frozen=True)
class ActorReady:
    """What a started actor tells its slot: where it runs and how much memory it has."""

    pid: int
    device: str
    place: str
    memory_used: int
    memory_total: int


class _Messages:
    """What the job code sends, kept for the generator to yield."""

    def __init__(self) -> None:
        self.queue: queue.Queue[FromWorker | None] = queue.Queue()

    def send(self, message: FromWorker) -> bool:
        self.queue.put(message)
        return True


class _Routes:
    """Sends each message of the batching thread to the queue of the ``run`` call of its job."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, queue.Queue[FromWorker]] = {}

    def open(self, job_id: str) -> queue.Queue[FromWorker]:
        with self._lock:
            self._queues[job_id] = queue.Queue()
            return self._queues[job_id]

    def close(self, job_id: str, messages: queue.Queue[FromWorker]) -> None:
        """Forget ``messages``, unless a later run of the same job (a retry) has opened its own queue."""
        with self._lock:
            if self._queues.get(job_id) is messages:
                del self._queues[job_id]

    def send(self, message: FromWorker) -> bool:
        with self._lock:
            target = self._queues.get(message.job_id)
        if target is not None:
            target.put(message)
        return True


class StyleActor:
    """Loads VGG19 once; then runs jobs handed to :meth:`run`. Wrapped with ``ray.remote`` by the backend."""

    def __init__(self, weights: str, threads: int, max_batch: int = 1) -> None:
        import ray
        import torch

        torch.set_num_threads(threads)
        gpu_ids = ray.get_gpu_ids()
        # Ray exposes only the GPUs it assigned, so the first visible one is ours. A node may
        # also advertise GPUs it does not have (tests do): then the job runs on the CPU.
        on_gpu = bool(gpu_ids) and torch.cuda.is_available()
        self.device = "cuda:0" if on_gpu else "cpu"
        self.place = f"cuda:{gpu_ids[0]}" if on_gpu else "cpu"
        self._start_error: str | None = None
        self._cancellations = _Cancellations()
        try:
            from ..request import StyleRequest
            from ..vgg import load_vgg19

            self._memory = _memory_reader(self.device)
            load_vgg19(weights, device=self.device, pooling=StyleRequest.pooling, padding=StyleRequest.padding)
        except Exception as exc:  # the slot reports this and the pool decides what to do
            log.exception("could not start")
            self._start_error = _start_failure_message(self.device, exc)
        self._batching: threading.Thread | None = None
        if max_batch > 1 and self._start_error is None:
            self._jobs: queue.Queue[RunJob | Stop] = queue.Queue()
            self._routes = _Routes()
            self._batching = threading.Thread(
                target=serve_batches,
                args=(self._jobs, self.device, self._routes.send, self._cancellations.begin, self._cancellations.end),
                name="batches",
                daemon=True,
            )
            self._batching.start()

    def ready(self) -> ActorReady | StartFailed:
        """Where the actor runs, or why it cannot serve."""
        if self._start_error is not None:
            return StartFailed(self._start_error)
        used, total = self._memory()
        return ActorReady(os.getpid(), self.device, self.place, used, total)

    def heartbeat(self) -> tuple[int, int]:
        """Memory in use and in total on the actor's device."""
        return self._memory()

    def cancel(self, job_id: str) -> None:
        """Stop ``job_id`` at its next evaluation (or before it starts)."""
        self._cancellations.request(job_id)

    def run(self, job: RunJob) -> Iterator[FromWorker]:
        """Run ``job``, yielding its progress and then how it ended."""
        if self._batching is not None:
            yield from self._run_batched(job)
            return
        messages = _Messages()

        def work() -> None:
            try:
                _run_job(job, self.device, messages, self._cancellations)
            finally:
                messages.queue.put(None)

        threading.Thread(target=work, name=f"job-{job.job_id}", daemon=True).start()
        while (message := messages.queue.get()) is not None:
            yield message

    def _run_batched(self, job: RunJob) -> Iterator[FromWorker]:
        """Hand ``job`` to the batching thread and yield what it sends for this job until it ends."""
        messages = self._routes.open(job.job_id)
        try:
            if not self._batching.is_alive():
                # It stopped after an unexpected error, which its last messages told the slot: the
                # actor is on its way out and takes no more work.
                yield JobEnded(job.job_id, "failed", _RETIRED, retiring=True)
                return
            self._jobs.put(job)
            while True:
                message = messages.get()
                yield message
                if isinstance(message, (JobDone, JobEnded)):
                    return
        finally:
            self._routes.close(job.job_id, messages)
