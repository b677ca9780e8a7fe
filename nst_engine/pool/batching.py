"""A worker's main loop when it takes several jobs at once (``[pool] max_batch`` above 1).

Jobs of one shape share a :class:`~nst_engine.batch.Batch`: one batched forward and backward
per step. Between steps the loop takes in new jobs (continuous batching): a job joins the
batch of its first scale's shape at once, or opens a batch of its own; a coarse-to-fine job
moves to the batch of its next scale's shape when it has spent a scale's budget; and batches
of different shapes take turns step by step. Each job ends on its own: finished, cancelled,
out of memory or failed.
"""

from __future__ import annotations

import logging
import queue
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import Cancelled, EngineError, OutOfMemory
from ..request import Progress
from .protocol import FromWorker, JobDone, JobEnded, JobProgress, RunJob, Stop
from .throttle import ProgressThrottle

if TYPE_CHECKING:
    from ..batch import Outcome

log = logging.getLogger("nst_engine.pool.worker")
_UNEXPECTED = "The renderer hit an unexpected error; please try again."

Send = Callable[[FromWorker], bool]


def serve_batches(
    jobs: queue.Queue[RunJob | Stop],
    device: str,
    send: Send,
    begin: Callable[[str], object],
    end: Callable[[str], None],
) -> None:
    """Run jobs from ``jobs`` in batches until a Stop arrives and every job in hand is over.

    ``begin(job_id)`` gives the job's cancel token and ``end(job_id)`` forgets it. Returns
    early, after failing the jobs in hand, if a batch step hits an error the engine did not
    mean to raise.
    """
    from ..batch import Batches

    batches = Batches(device)
    stopping = False
    while True:
        while not stopping:
            try:
                message = jobs.get(block=not len(batches))
            except queue.Empty:
                break
            if isinstance(message, Stop):
                stopping = True
                break
            cancel = begin(message.job_id)
            try:
                if cancel.is_set():
                    raise Cancelled("The job was cancelled before it started.")
                throttle = ProgressThrottle(message.progress_interval_s, message.preview_interval_s)
                batches.join(
                    message.request,
                    on_progress=_reporter(message, throttle, send),
                    gate=throttle,
                    progress_every=message.progress_every,
                    preview_size=message.preview_size,
                    cancel=cancel,
                    tag=message.job_id,
                )
            except Exception as exc:
                _report_end(message.job_id, exc, send, end)
        try:
            batches.step(lambda outcome: _report_outcome(outcome, send, end))
        except Exception:
            # Not an error the engine meant to raise: the process may be damaged, so every job in
            # hand fails and the worker makes way for a new one.
            log.error("unexpected error in a batch step:\n%s", traceback.format_exc())
            for member in batches.members():
                end(member.tag)
                send(JobEnded(member.tag, "failed", _UNEXPECTED, retiring=True))
            return
        if stopping and not len(batches):
            return


def _report_outcome(outcome: Outcome, send: Send, end: Callable[[str], None]) -> None:
    if outcome.result is not None:
        end(outcome.member.tag)
        send(JobDone(outcome.member.tag, outcome.result))
    else:
        _report_end(outcome.member.tag, outcome.error, send, end)


def _reporter(message: RunJob, throttle: ProgressThrottle, send: Send) -> Callable[[Progress], None]:
    def report(progress: Progress) -> None:
        admitted = throttle.admit(progress)
        if admitted is not None:
            send(JobProgress(message.job_id, admitted))

    return report


def _report_end(job_id: str, error: BaseException, send: Send, end: Callable[[str], None]) -> None:
    """Tell the pool how a job ended without a result; forget its cancel token first, as one run does."""
    end(job_id)
    if isinstance(error, Cancelled):
        send(JobEnded(job_id, "cancelled", str(error) or "The job was cancelled."))
    elif isinstance(error, EngineError):
        send(JobEnded(job_id, "oom" if isinstance(error, OutOfMemory) else "failed", str(error)))
    else:
        log.error("unexpected error in job %s: %s", job_id, "".join(traceback.format_exception(error)))
        send(JobEnded(job_id, "failed", f"The renderer hit an unexpected error ({type(error).__name__}); try again."))
