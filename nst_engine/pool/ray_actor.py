"""The Ray actor behind a ray worker slot: a warm VGG19 on one device of one node, one job at a time.

It runs the same job code as a local worker process (:func:`.worker._run_job`); what that code
sends, the actor yields from a generator, so progress streams back while the job runs. The actor
is threaded: ``heartbeat`` and ``cancel`` are answered while ``run`` is busy.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from .protocol import FromWorker, RunJob, StartFailed
from .worker import _Cancellations, _memory_reader, _run_job, _start_failure_message

log = logging.getLogger("nst_engine.pool.ray_actor")

# run, heartbeat and cancel at once, with room for a second heartbeat while one is slow.
ACTOR_CONCURRENCY = 4


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


class StyleActor:
    """Loads VGG19 once; then runs jobs handed to :meth:`run`. Wrapped with ``ray.remote`` by the backend."""

    def __init__(self, weights: str, threads: int) -> None:
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
        messages = _Messages()

        def work() -> None:
            try:
                _run_job(job, self.device, messages, self._cancellations)
            finally:
                messages.queue.put(None)

        threading.Thread(target=work, name=f"job-{job.job_id}", daemon=True).start()
        while (message := messages.queue.get()) is not None:
            yield message
