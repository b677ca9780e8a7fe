"""The executor pool: style-transfer jobs from asyncio code onto warm workers.

Everything here runs on the event loop and never touches torch; the workers do the work.
The queue, fairness, limits, admission and estimates live here once; what runs the jobs is a
set of worker slots (:mod:`.slot`) made by a backend: processes on this machine by default.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections import Counter

from ..errors import EngineError
from ..memory import FIXED_OVERHEAD, estimate_peak_bytes, max_fitting_size
from ..presets import resolve_levels, resolve_size_steps, scale_ladder, working_size
from ..request import StyleRequest, StyleResult
from .config import PoolConfig
from .devices import DeviceType, device_type
from .errors import JobTooLarge, OwnerLimitReached, PoolClosed, PoolError, QueueFull
from .jobs import Job
from .protocol import (
    FromWorker,
    Heartbeat,
    JobDone,
    JobEnded,
    JobProgress,
    Ready,
    RunJob,
    StartFailed,
)
from .scheduler import FairQueue
from .stats import PoolStats
from .slot import Assignment, Ending, SlotBackend, WorkerSlot
from .throughput import Slot, ThroughputModel, project_finish
from .worker_handle import LocalBackend

log = logging.getLogger("nst_engine.pool")

# Below this an out-of-memory error is not about the image size, so shrinking cannot help.
_SMALLEST_RETRY_SIZE = 64
# How long QueueFull tells callers to wait before anything has been measured.
_UNMEASURED_RETRY_AFTER_S = 30.0
_MAX_RESTART_DELAY_S = 30.0
# Queued jobs fail, rather than wait for ever, once every worker slot failed to start this often in a row.
_START_FAILURES_BEFORE_GIVING_UP = 3


class Pool:
    """Runs :class:`~nst_engine.request.StyleRequest` jobs on the worker slots of a backend.

    Start with ``await Pool.start(config)``, submit with :meth:`submit`, stop with :meth:`close`.
    """

    def __init__(self, config: PoolConfig, backend: SlotBackend) -> None:
        self.config = config
        self.backend = backend
        self._loop = asyncio.get_running_loop()
        self._heartbeat_interval_s = heartbeat_interval(config)
        self._workers: dict[str, WorkerSlot] = {}
        self._exited: dict[str, asyncio.Event] = {}
        self._queue: FairQueue[Job] = FairQueue()
        self._active: dict[str, Job] = {}
        self._active_by_owner: Counter[str] = Counter()
        self._estimates: dict[str, dict[DeviceType, int]] = {}
        # What a job must share with others to run in one batch with them (as far as the pool can tell).
        self._shapes: dict[str, tuple[object, ...] | None] = {}
        self._batch_sizes: Counter[int] = Counter()
        self._work: dict[str, float | None] = {}
        self._published_position: dict[str, int] = {}
        # Memory admission plans for, by place: the place's device type and its bytes.
        self._capacity: dict[str, tuple[DeviceType, int]] = {}
        self._reruns: set[str] = set()
        self._throughput = ThroughputModel()
        self._counts: Counter[str] = Counter()
        self._start_failures: Counter[str] = Counter()
        self._last_start_error: str | None = None
        self._restart_timers: dict[str, asyncio.TimerHandle] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self._all_ready = asyncio.Event()
        self._serving = False
        self._closing = False
        self._stopping = False
        self._closed = asyncio.Event()
        self._watchdog: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, config: PoolConfig | None = None, backend: SlotBackend | None = None) -> Pool:
        """Start every worker and return once all have loaded VGG19.

        ``backend`` None makes the one ``config.backend`` names. Raises PoolError, naming the
        reason, when a worker cannot start or the backend cannot reach its workers.
        """
        config = config or PoolConfig()
        backend = backend or await _backend_for(config)
        pool = cls(config, backend)
        await backend.open(pool._on_plan_changed)
        try:
            await pool._start_workers()
        except BaseException:
            await backend.close()
            raise
        return pool

    @property
    def devices(self) -> tuple[str, ...]:
        """Where the backend means to run workers now (for a local pool, its devices)."""
        return tuple(self.backend.places())

    # --- submitting and cancelling -------------------------------------------------------

    def submit(
        self,
        request: StyleRequest,
        owner: str,
        job_id: str | None = None,
        preview_size: int | None = 128,
        content_aspect: float = 1.0,
    ) -> Job:
        """Queue ``request`` for ``owner`` and return its handle at once.

        ``content_aspect`` is the content's short side over its long side, as the caller read
        it (off the event loop); the pool never opens an image, and 1 (a square) is the worst case.
        Raises PoolClosed, OwnerLimitReached, JobTooLarge or QueueFull when the job is not
        taken. A request the engine cannot even measure (a broken image, a bad setting) is
        taken and ends ``failed`` straight away, with the engine's message.
        """
        if self._closing:
            raise PoolClosed()
        if self.config.shape_multiple > 1 and request.shape_multiple == 1:
            request = dataclasses.replace(request, shape_multiple=self.config.shape_multiple)
        if job_id is not None and job_id in self._active:
            raise ValueError(f"job id {job_id!r} is already queued or running")
        if self._active_by_owner[owner] >= self.config.per_owner_limit:
            raise OwnerLimitReached(self.config.per_owner_limit)
        job = Job(
            job_id or uuid.uuid4().hex[:12],
            owner,
            request,
            preview_size,
            cancel=self._cancel,
            position=self._queue.position,
            eta=self._eta,
        )
        try:
            estimates = self._admit(request, content_aspect)
        except EngineError as exc:
            self._counts["failed"] += 1
            job._failed(str(exc))
            return job
        if (reason := self._unavailable()) is not None:
            self._counts["failed"] += 1
            job._failed(reason)
            return job
        if len(self._queue) >= self.config.queue_size:
            raise QueueFull(self._retry_after())
        self._estimates[job.id] = estimates
        self._shapes[job.id] = _shape(request, content_aspect)
        self._work[job.id] = _work(request)
        self._active[job.id] = job
        self._active_by_owner[owner] += 1
        self._idle.clear()
        self._queue.push(job, owner)
        self._dispatch()
        return job

    def _cancel(self, job: Job) -> bool:
        if self._queue.remove(job):
            self._settle(job)
            job._cancelled()
            self._counts["cancelled"] += 1
            self._publish_positions()
            self._check_idle()
            return True
        running = self._slot_running(job)
        if running is None:
            return False
        worker, assignment = running
        if assignment.ending == "timeout":
            return False
        self._stop_running(worker, assignment, "cancel")
        return True

    def _stop_running(self, worker: WorkerSlot, assignment: Assignment, ending: Ending) -> None:
        """Ask the slot to stop the job at its next evaluation; kill the slot if it does not."""
        if assignment.ending is not None:
            return
        assignment.ending = ending
        worker.cancel(assignment.job.id)
        grace = self._loop.call_later(self.config.kill_grace_s, self._kill_if_still_running, worker, assignment)
        assignment.timers = (*assignment.timers, grace)

    def _kill_if_still_running(self, worker: WorkerSlot, assignment: Assignment) -> None:
        if worker.assignments.get(assignment.job.id) is assignment:
            worker.kill("timeout" if assignment.ending == "timeout" else "cancel")

    def _time_out(self, worker: WorkerSlot, assignment: Assignment) -> None:
        if worker.assignments.get(assignment.job.id) is assignment:
            log.info("job %s ran past %s s; stopping it", assignment.job.id, self.config.job_timeout_s)
            self._stop_running(worker, assignment, "timeout")

    # --- admission ----------------------------------------------------------------------

    def _admit(self, request: StyleRequest, aspect: float) -> dict[DeviceType, int]:
        """Estimated peak memory per device type; JobTooLarge when no device has that much.

        EngineError when the request makes no sense. A request the estimate cannot make sense
        of otherwise gets no estimate: the worker then refuses it with the engine's message.
        """
        types = {kind for kind, _ in self._capacity.values()}
        types |= {device_type(w.device) for w in self._workers.values()}
        types |= {device_type(device) for device in self.backend.plan().values()}
        try:
            estimates = {kind: estimate_peak_bytes(request, kind, aspect) for kind in types}
        except EngineError:
            raise
        except Exception:
            log.info("no memory estimate for a request; the engine will judge it", exc_info=True)
            return {}
        # With nothing measured yet (no worker ready anywhere) there is nothing to refuse on.
        if not self._capacity or any(estimates[kind] <= capacity for kind, capacity in self._capacity.values()):
            return estimates
        largest = max(
            max_fitting_size(request, capacity, kind, aspect) for kind, capacity in self._capacity.values()
        )
        size, _ = resolve_size_steps(request)
        needed = min(estimates.values())
        most = max(capacity for _, capacity in self._capacity.values())
        fits = f"the largest size that fits is {largest} px" if largest else "not even the smallest size fits"
        raise JobTooLarge(
            largest,
            f"At {size} px this job needs about {_gib(needed)} of memory, more than any worker has "
            f"({_gib(most)}); {fits}.",
        )

    def _fits(self, job: Job, worker: WorkerSlot) -> bool:
        """Whether ``job`` fits beside the jobs already running at the worker's place (a ledger of
        their estimates), so two big jobs on one GPU do not both start and run out of memory."""
        capacity = self._capacity.get(worker.place)
        kind = device_type(worker.device)
        estimate = self._estimates.get(job.id, {}).get(kind)
        if capacity is None or estimate is None:
            return True
        if worker.assignments:
            estimate -= FIXED_OVERHEAD.get(kind, 0)  # it joins a process whose fixed cost is counted
        return self._held(worker.place, kind) + estimate <= capacity[1]

    def _held(self, place: str, kind: DeviceType) -> int:
        """Estimated bytes the running jobs at ``place`` hold; jobs in one process share its fixed cost."""
        held = 0
        for worker in self._workers.values():
            if worker.place == place and worker.assignments:
                estimates = [self._estimates.get(job_id, {}).get(kind, 0) for job_id in worker.assignments]
                held += sum(estimates) - FIXED_OVERHEAD.get(kind, 0) * (len(estimates) - 1)
        return held

    def _preference(self, job: Job, worker: WorkerSlot) -> tuple[float, float, float]:
        """Lower is better. Workers on one GPU share it, so there a batch of the job's shape comes
        first; CPU workers each have cores of their own, so there the least busy worker comes first."""
        mates, place = -self._batch_mates(job, worker), self._load(worker)
        own = len(worker.assignments) / worker.capacity
        return (mates, place, own) if device_type(worker.device) == "cuda" else (place, own, mates)

    def _batch_mates(self, job: Job, worker: WorkerSlot) -> int:
        """Jobs of ``job``'s shape the worker is running: a batch it can join."""
        shape = self._shapes.get(job.id)
        if shape is None:
            return 0
        return sum(self._shapes.get(job_id) == shape for job_id in worker.assignments)

    def _retry_after(self) -> float:
        waits = [self._remaining(w) for w in self._workers.values() if w.assignments]
        known = [wait for wait in waits if wait is not None]
        return max(1.0, min(known)) if known else _UNMEASURED_RETRY_AFTER_S

    # --- dispatch -----------------------------------------------------------------------

    def _dispatch(self) -> None:
        """Hand queued jobs, in fair order, to slots with room, on the least-loaded places."""
        while len(self._queue):
            free = [w for w in self._workers.values() if w.free]
            job = self._queue.pop(lambda queued: any(self._fits(queued, w) for w in free)) if free else None
            if job is None:
                break
            fitting = [w for w in free if self._fits(job, w)]
            self._run(job, min(fitting, key=lambda w: self._preference(job, w)))
        self._publish_positions()
        self._check_idle()

    def _load(self, worker: WorkerSlot) -> float:
        """The share of the places taken on the worker's device (its place), 0 to 1."""
        at_place = [w for w in self._workers.values() if w.place == worker.place and w.state in ("idle", "busy")]
        return sum(len(w.assignments) for w in at_place) / sum(w.capacity for w in at_place)

    def _run(self, job: Job, worker: WorkerSlot) -> None:
        self._batch_sizes[self._batch_mates(job, worker) + 1] += 1
        assignment = Assignment(job, job.request, started_at=time.monotonic())
        assignment.timers = (self._loop.call_later(self.config.job_timeout_s, self._time_out, worker, assignment),)
        worker.assignments[job.id] = assignment
        worker.state = "busy"
        self._published_position.pop(job.id, None)
        worker.run(self._run_message(job, job.request))
        job._started(worker.device, worker.id)

    def _run_message(self, job: Job, request: StyleRequest) -> RunJob:
        return RunJob(
            job.id,
            request,
            job.preview_size,
            self.config.progress_every,
            self.config.progress_interval_s,
            self.config.preview_interval_s,
        )

    def _publish_positions(self) -> None:
        for position, job in enumerate(self._queue, start=1):
            if self._published_position.get(job.id) != position:
                self._published_position[job.id] = position
                job._queued(position)

    def _slot_running(self, job: Job) -> tuple[WorkerSlot, Assignment] | None:
        for worker in self._workers.values():
            assignment = worker.assignments.get(job.id)
            if assignment is not None and assignment.job is job:
                return worker, assignment
        return None

    # --- messages from workers ----------------------------------------------------------

    def _on_message(self, worker: WorkerSlot, message: FromWorker) -> None:
        if self._workers.get(worker.id) is not worker:
            return
        worker.last_seen = time.monotonic()
        match message:
            case Heartbeat(used, total):
                worker.memory = (used, total)
            case Ready(pid, used, total):
                worker.memory = (used, total)
                self._on_ready(worker, pid, total)
            case StartFailed(text):
                worker.start_error = text
            case JobProgress(job_id, progress):
                assignment = worker.assignments.get(job_id)
                if assignment is not None and assignment.ending is None:
                    assignment.job._progress(progress)
            case JobDone(job_id, result):
                assignment = self._release(worker, job_id)
                if assignment is not None:
                    seconds = time.monotonic() - assignment.started_at
                    if assignment.ending is None:
                        self._throughput.record(worker.place, seconds, _work(assignment.request))
                    self._conclude(assignment, result=result)
            case JobEnded(job_id, kind, text, retiring):
                if retiring:
                    worker.state = "stopping"
                    self._all_ready.clear()
                self._on_job_ended(worker, job_id, kind, text)

    def _on_ready(self, worker: WorkerSlot, pid: int, total: int) -> None:
        worker.pid = pid
        worker.state = "idle"
        worker.was_ready = True
        limit = self.config.memory_limit_bytes
        self._capacity[worker.place] = (device_type(worker.device), total if limit is None else min(total, limit))
        self._start_failures[worker.id] = 0
        if not worker.ready.done():
            worker.ready.set_result(None)
        log.info("worker %s ready on %s (pid %s)", worker.id, worker.place, pid)
        self._update_all_ready()
        self._dispatch()

    def _on_job_ended(self, worker: WorkerSlot, job_id: str, kind: str, text: str) -> None:
        assignment = worker.assignments.get(job_id)
        if assignment is None:
            return
        if kind == "oom" and assignment.ending is None and not assignment.oom_retried:
            smaller = _shrunk(assignment.request, self.config.oom_retry_scale)
            if smaller is not None:
                log.info("job %s ran out of memory; retrying at %s px", job_id, smaller.size)
                assignment.oom_retried = True
                assignment.request = smaller
                worker.run(self._run_message(assignment.job, smaller))
                return
        self._release(worker, job_id)
        if kind == "oom":
            text = _out_of_memory_message(assignment.request)
        self._conclude(assignment, error=text, cancelled=kind == "cancelled")

    def _release(self, worker: WorkerSlot, job_id: str) -> Assignment | None:
        """Free the slot of the job ``job_id``; the assignment, or None if it was not running it."""
        assignment = worker.assignments.pop(job_id, None)
        if assignment is None:
            return None
        assignment.cancel_timers()
        if worker.state == "busy" and not worker.assignments:
            worker.state = "idle"
        return assignment

    def _conclude(
        self,
        assignment: Assignment,
        *,
        result: StyleResult | None = None,
        error: str | None = None,
        cancelled: bool = False,
    ) -> None:
        """Give the job its final state. A cancel the caller asked for wins over any outcome; a
        result that beat the time limit's stop request is still delivered."""
        job = assignment.job
        self._settle(job)
        if assignment.ending == "cancel" or (cancelled and assignment.ending is None):
            self._counts["cancelled"] += 1
            job._cancelled()
        elif result is not None:
            self._counts["completed"] += 1
            job._finished(result)
        elif assignment.ending == "timeout":
            self._counts["failed"] += 1
            job._failed(f"The job took longer than {self.config.job_timeout_s:g} s and was stopped.")
        else:
            self._counts["failed"] += 1
            job._failed(error or "The job failed.")
        self._dispatch()

    def _settle(self, job: Job) -> None:
        del self._active[job.id]
        self._active_by_owner[job.owner] -= 1
        if not self._active_by_owner[job.owner]:
            del self._active_by_owner[job.owner]
        self._estimates.pop(job.id, None)
        self._shapes.pop(job.id, None)
        self._work.pop(job.id, None)
        self._published_position.pop(job.id, None)
        self._reruns.discard(job.id)

    def _check_idle(self) -> None:
        if not self._active:
            self._idle.set()

    # --- worker lifecycle ---------------------------------------------------------------

    async def _start_workers(self) -> None:
        for slot_id in self.backend.plan():
            self._spawn(slot_id)
        handles = list(self._workers.values())
        try:
            outcomes = await asyncio.wait_for(
                asyncio.gather(*(w.ready for w in handles)), self.config.startup_timeout_s
            )
        except TimeoutError:
            outcomes = ["The workers did not start in time."]
        failures = [outcome for outcome in outcomes if outcome is not None]
        if failures:
            await self._stop_workers(kill=True)
            raise PoolError(failures[0])
        self._serving = True
        self._watchdog = asyncio.create_task(self._watch(), name="nst-pool-watchdog")

    def _spawn(self, worker_id: str) -> None:
        self._restart_timers.pop(worker_id, None)
        if worker_id not in self.backend.plan():
            return
        worker = self.backend.create(worker_id, on_message=self._on_message, on_exit=self._on_exit)
        self._workers[worker_id] = worker
        self._exited[worker_id] = asyncio.Event()
        worker.start()

    def _on_plan_changed(self) -> None:
        """The backend's slots changed (a machine joined or left): start the new ones, stop the gone."""
        if not self._serving or self._stopping:
            return
        plan = self.backend.plan()
        for worker_id in plan:
            if worker_id not in self._workers and worker_id not in self._restart_timers:
                self._spawn(worker_id)
        for worker in list(self._workers.values()):
            if worker.id not in plan:
                worker.stop()
        for worker_id in [w for w in self._restart_timers if w not in plan]:
            self._restart_timers.pop(worker_id).cancel()
        self._update_all_ready()
        self._fail_queue_if_unavailable()
        self._dispatch()

    def _on_exit(self, worker: WorkerSlot) -> None:
        if self._workers.get(worker.id) is not worker:
            return
        del self._workers[worker.id]
        self._exited[worker.id].set()
        self._all_ready.clear()
        if not worker.was_ready:
            reason = worker.start_error or (
                f"The worker for {worker.device} exited while starting ({worker.describe_exit()})."
            )
            if not worker.ready.done():
                worker.ready.set_result(reason)
            if self._serving and not self._stopping:
                log.error("worker %s could not start: %s", worker.id, reason)
                self._start_failures[worker.id] += 1
                self._last_start_error = reason
        if not any(w.place == worker.place for w in self._workers.values()) and worker.id not in self.backend.plan():
            self._capacity.pop(worker.place, None)
        assignments = list(worker.assignments.values())
        worker.assignments.clear()
        for assignment in assignments:
            assignment.cancel_timers()
            job = assignment.job
            log.warning("worker %s died running job %s: %s", worker.id, job.id, worker.describe_exit())
            if worker.rerun_lost_jobs() and assignment.ending is None and job.id not in self._reruns:
                log.info("running job %s once more, elsewhere", job.id)
                self._reruns.add(job.id)
                job._requeued()
                self._queue.push_front(job, job.owner)
            else:
                self._conclude(assignment, error=worker.death_message())
        if not assignments and worker.was_ready and not self._stopping:
            log.warning("worker %s exited: %s", worker.id, worker.describe_exit())
        if self._serving and not self._stopping and (not self._closing or len(self._queue)):
            self._replace_later(worker)
        self._fail_queue_if_unavailable()
        self._dispatch()

    def _replace_later(self, worker: WorkerSlot) -> None:
        if worker.id not in self.backend.plan():
            return
        # A worker that never became ready will likely fail again: back off, doubling each time.
        failures = self._start_failures[worker.id]
        delay = min(_MAX_RESTART_DELAY_S, 2.0 ** (failures - 1)) if failures else 0.0
        self._restart_timers[worker.id] = self._loop.call_later(delay, self._spawn, worker.id)

    def _fail_queue_if_unavailable(self) -> None:
        if (reason := self._unavailable()) is not None:
            for job in list(self._queue):
                self._queue.remove(job)
                self._settle(job)
                self._counts["failed"] += 1
                job._failed(reason)

    def _unavailable(self) -> str | None:
        """Why no job can run for now: no worker is ready and every slot keeps failing to start
        (or there is none). While the backend cannot reach its workers at all, jobs wait instead."""
        if not self.backend.connected() or self._ready_count():
            return None
        if any(self._start_failures[slot] < _START_FAILURES_BEFORE_GIVING_UP for slot in self.backend.plan()):
            return None
        reason = f" ({self._last_start_error})" if self._last_start_error else ""
        return f"No renderer is available right now{reason}; please try again later."

    async def _watch(self) -> None:
        """Kill workers that stopped sending heartbeats, or that take too long to start."""
        while True:
            await asyncio.sleep(self._heartbeat_interval_s)
            now = time.monotonic()
            for worker in list(self._workers.values()):
                silent_for = now - worker.last_seen
                if worker.state in ("idle", "busy", "stopping") and silent_for > self.config.heartbeat_timeout_s:
                    worker.kill("unresponsive")
                elif worker.state == "starting" and now - worker.started_at > self.config.startup_timeout_s:
                    worker.kill("startup")

    async def _stop_workers(self, *, kill: bool) -> None:
        try:
            await self._stop_slots(kill=kill)
        finally:
            await self.backend.close()

    async def _stop_slots(self, *, kill: bool) -> None:
        self._stopping = True
        for timer in self._restart_timers.values():
            timer.cancel()
        self._restart_timers.clear()
        for worker in list(self._workers.values()):
            if kill or worker.state == "starting":
                worker.kill("shutdown")
            else:
                worker.stop()
        waits = [self._exited[worker_id].wait() for worker_id in self._workers]
        try:
            await asyncio.wait_for(asyncio.gather(*waits), self.config.kill_grace_s)
        except TimeoutError:
            for worker in list(self._workers.values()):
                worker.kill("shutdown")
            await asyncio.gather(*(self._exited[worker_id].wait() for worker_id in self._workers))

    def _ready_count(self) -> int:
        return sum(w.state in ("idle", "busy") for w in self._workers.values())

    def _update_all_ready(self) -> None:
        plan = self.backend.plan()
        ready = {w.id for w in self._workers.values() if w.state in ("idle", "busy")}
        if all(slot in ready for slot in plan):
            self._all_ready.set()
        else:
            self._all_ready.clear()

    async def wait_until_ready(self) -> None:
        """Wait until every worker slot has a warm worker again, e.g. after a crash replaced one.

        Raises PoolClosed if the pool closes first.
        """
        if self._closing:
            raise PoolClosed()
        ready = asyncio.ensure_future(self._all_ready.wait())
        closed = asyncio.ensure_future(self._closed.wait())
        try:
            await asyncio.wait((ready, closed), return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
            closed.cancel()
        if not self._all_ready.is_set():
            raise PoolClosed()

    # --- closing ------------------------------------------------------------------------

    async def close(self, drain: bool = True) -> None:
        """Stop taking jobs; with ``drain`` finish the queue first, else cancel every job.

        Every job has a final state when this returns, and every worker process has exited.
        """
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        if not drain:
            for job in list(self._queue):
                self._cancel(job)
            for worker in list(self._workers.values()):
                for assignment in list(worker.assignments.values()):
                    self._stop_running(worker, assignment, "cancel")
        await self._idle.wait()
        if self._watchdog is not None:
            self._watchdog.cancel()
        await self._stop_workers(kill=False)
        self._closed.set()

    # --- estimates and stats ------------------------------------------------------------

    def _remaining(self, worker: WorkerSlot) -> float | None:
        """Seconds until the slot has room, from its jobs' progress or the measured throughput."""
        if worker.free or not worker.assignments:
            return 0.0
        waits = [self._left(worker, assignment) for assignment in worker.assignments.values()]
        known = [wait for wait in waits if wait is not None]
        return min(known) if known else None

    def _left(self, worker: WorkerSlot, assignment: Assignment) -> float | None:
        """Seconds until ``assignment`` ends, from its progress or the measured throughput."""
        elapsed = time.monotonic() - assignment.started_at
        progress = assignment.job.last_progress
        if progress is not None and progress.iteration > 0 and progress.total > 0:
            return max(0.0, elapsed * (progress.total / progress.iteration - 1))
        expected = self._throughput.expected_seconds(worker.place, _work(assignment.request))
        return None if expected is None else max(0.0, expected - elapsed)

    def _eta(self, job: Job) -> float | None:
        running = self._slot_running(job)
        if running is not None:
            return self._left(*running)
        queued = list(self._queue)
        if job not in queued:
            return None
        ahead = queued[: queued.index(job) + 1]
        slots = [Slot(w.place, self._remaining(w)) for w in self._workers.values() if w.state in ("idle", "busy")]
        return project_finish(slots, [self._work.get(j.id) for j in ahead], self._throughput)[-1]

    def _batches_at(self, place: str, ready: list[WorkerSlot]) -> list[int]:
        """Sizes of the batches running at ``place``, largest first (a lone job is a batch of one)."""
        sizes: list[int] = []
        for worker in ready:
            if worker.place == place:
                sizes.extend(Counter(self._shapes.get(job_id) for job_id in worker.assignments).values())
        return sorted(sizes, reverse=True)

    def stats(self) -> PoolStats:
        """Queue length, jobs and workers per device, memory per device, counts and durations."""
        ready = [w for w in self._workers.values() if w.state in ("idle", "busy")]
        places = list(dict.fromkeys([*self.backend.places(), *(w.place for w in ready)]))
        memory: dict[str, tuple[int, int]] = {}
        for place in places:
            at_place = [w for w in ready if w.place == place]
            total = max((w.memory[1] for w in at_place), default=0)
            if all(device_type(w.device) == "cpu" for w in at_place):
                used = sum(w.memory[0] for w in at_place)
            else:
                used = max((w.memory[0] for w in at_place), default=0)
            memory[place] = (used, total)
        return PoolStats(
            queue_length=len(self._queue),
            running_by_device={p: sum(len(w.assignments) for w in ready if w.place == p) for p in places},
            workers_by_device={p: sum(w.place == p for w in ready) for p in places},
            memory=memory,
            completed=self._counts["completed"],
            failed=self._counts["failed"],
            cancelled=self._counts["cancelled"],
            recent_durations=list(self._throughput.recent_durations),
            batches_by_device={p: self._batches_at(p, ready) for p in places},
            batch_sizes=dict(self._batch_sizes),
            alive=self._serving and not self._closing and bool(ready) and self.backend.connected(),
            backend=self.backend.name,
            nodes=tuple(sorted({w.node for w in self._workers.values()})),
            node_by_device={w.place: w.node for w in ready},
        )


def _shape(request: StyleRequest, aspect: float) -> tuple[object, ...] | None:
    """The batch a job joins first, as far as the pool can tell before any image is opened: its
    first scale's shape (with the content's aspect, landscape) and network settings, as
    :func:`nst_engine.batch.batch_key` has it; jobs that share it most likely share a batch."""
    try:
        size, steps = resolve_size_steps(request)
    except EngineError:
        return None
    if not isinstance(size, int) or not isinstance(steps, int):
        return None  # the worker refuses the job with the engine's message
    side = scale_ladder(size, steps, resolve_levels(request, size))[0][0]
    shape = working_size((side, max(1, round(side * aspect))), request.shape_multiple)
    layers = tuple(dict.fromkeys(request.content_layers + request.style_layers))
    return (*shape, request.weights, request.pooling, request.padding, layers)


async def _backend_for(config: PoolConfig) -> SlotBackend:
    if config.backend == "ray":
        # Imported only here: Ray is large, and a local pool never needs it.
        from .ray_backend import RayBackend

        return RayBackend(
            config.ray,
            weights=config.weights,
            cpu_threads=config.cpu_threads,
            heartbeat_interval_s=heartbeat_interval(config),
            stale_after_s=config.heartbeat_timeout_s,
            max_batch=config.max_batch,
        )
    return await LocalBackend.detect(
        config.devices,
        workers_per_device=config.workers_per_device,
        weights=config.weights,
        cpu_threads=config.cpu_threads,
        heartbeat_interval_s=heartbeat_interval(config),
        max_batch=config.max_batch,
        shape_multiple=config.shape_multiple,
    )


def _work(request: StyleRequest) -> float | None:
    """A job's amount of work, size² × steps; None when the request cannot say."""
    try:
        size, steps = resolve_size_steps(request)
    except EngineError:
        return None
    return float(size * size * steps)


def _shrunk(request: StyleRequest, scale: float) -> StyleRequest | None:
    """The request at ``scale`` times its size, or None when that would be too small to help."""
    try:
        size, steps = resolve_size_steps(request)
    except EngineError:
        return None
    smaller = int(size * scale)
    if smaller < _SMALLEST_RETRY_SIZE:
        return None
    return dataclasses.replace(request, size=smaller, steps=steps)


def _out_of_memory_message(request: StyleRequest) -> str:
    try:
        size, _ = resolve_size_steps(request)
    except EngineError:
        return "The image was too large for the device's memory; try a smaller size."
    return f"The image was too large for the device's memory, even at {size} px; try a smaller size."


def heartbeat_interval(config: PoolConfig) -> float:
    """How often workers say they are alive: often enough that a few misses fit in the timeout."""
    return min(2.0, config.heartbeat_timeout_s / 5)


def _gib(size: int) -> str:
    return f"{size / 2**30:.1f} GiB"
