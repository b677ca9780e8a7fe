"""What the pool promises whatever runs its jobs: the same tests against each backend.

``local`` runs worker processes here; ``ray`` runs actors on the session's small Ray. One
pool per backend serves the module's shared tests (starting workers costs seconds); every
test leaves it idle, with both workers warm, for the next. Lifecycle tests own a one-worker pool.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable

import pytest
import pytest_asyncio

from nst_engine.pool import (
    JobCancelled,
    JobFailed,
    JobTooLarge,
    OwnerLimitReached,
    Pool,
    PoolClosed,
    PoolConfig,
    QueueFull,
)

from .conftest import (
    BACKENDS,
    clear_leftovers,
    config_for,
    endless_request,
    first_progress,
    settled,
    tiny_request,
    use_backend,
    worker_pids,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

MEMORY_LIMIT = 4 * 2**30
SHARED = dict(
    queue_size=4,
    per_owner_limit=3,
    progress_every=1,
    progress_interval_s=0.05,
    preview_interval_s=0.3,
    heartbeat_timeout_s=5.0,
    kill_grace_s=5.0,
    memory_limit_bytes=MEMORY_LIMIT,
)
FINAL = {"finished", "failed", "cancelled"}


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=BACKENDS)
async def shared_pool(request: pytest.FixtureRequest):
    pool = await Pool.start(config_for(use_backend(request, request.param), 2, **SHARED))
    yield pool
    await pool.close(drain=False)


@pytest_asyncio.fixture(loop_scope="module")
async def pool(shared_pool: Pool):
    await shared_pool.wait_until_ready()
    yield shared_pool
    await clear_leftovers(shared_pool)


def one_worker(backend: str, **settings: object) -> PoolConfig:
    return config_for(backend, 1, progress_every=1, progress_interval_s=0.05, **settings)


def exited(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def all_exited(pids: Iterable[int | None]) -> None:
    """Wait until every process in ``pids`` is gone (a Ray actor exits a moment after it is killed)."""
    async with asyncio.timeout(30):
        while not all(pid is not None and exited(pid) for pid in pids):
            await asyncio.sleep(0.1)


async def test_concurrent_jobs_each_finish_once_with_what_they_asked_for(pool: Pool) -> None:
    completed_before = pool.stats().completed
    sizes = [32, 36, 40, 44, 48, 52]
    jobs, streams = [], []
    for index, size in enumerate(sizes):
        jobs.append(pool.submit(tiny_request(size=size), owner=f"user{index % 3}"))
        streams.append(jobs[-1].updates())
        # The first update is the current state and arrives without yielding to the loop,
        # so every stream is subscribed before any worker reports anything.
        assert (await anext(streams[-1])).kind in ("queued", "started")
    histories = [[update async for update in stream] for stream in streams]

    for job, size, updates in zip(jobs, sizes, histories, strict=True):
        assert [update.kind for update in updates if update.kind in FINAL] == ["finished"]
        assert updates[-1].kind == "finished"
        progress = [update.progress for update in updates if update.progress is not None]
        assert progress and all(p.total == 3 and 1 <= p.iteration <= 3 for p in progress)
        assert progress[0].preview.startswith(b"\x89PNG"), "the first report carries a preview"
        result = await job.result()
        assert (result.width, result.height) == (size, size * 3 // 4)
        assert result.device == "cpu" and result.evaluations == 3
        assert job.state == "done" and job.position == 0
    assert len({job.id for job in jobs}) == len(jobs)
    stats = pool.stats()
    assert stats.completed == completed_before + len(jobs)
    assert len(stats.recent_durations) >= len(jobs) and all(d > 0 for d in stats.recent_durations)


async def test_the_caller_s_job_id_is_kept(pool: Pool) -> None:
    job = pool.submit(tiny_request(), owner="ids", job_id="stored-42", preview_size=None)
    assert job.id == "stored-42"
    assert await settled(job) == "done"


async def test_owners_take_turns_and_limits_refuse_politely(pool: Pool) -> None:
    assert await settled(pool.submit(tiny_request(), owner="warmup")) == "done"  # something measured
    blockers = [pool.submit(endless_request(), owner="blocker") for _ in range(2)]
    for blocker in blockers:
        await first_progress(blocker)
    alice = [pool.submit(tiny_request(), owner="alice") for _ in range(3)]
    bob = pool.submit(tiny_request(), owner="bob")
    bob_updates = bob.updates()

    assert [job.position for job in (alice[0], bob, alice[1], alice[2])] == [1, 2, 3, 4]
    assert (await anext(bob_updates)).position == 2
    assert 0 < alice[0].eta <= bob.eta < alice[2].eta
    with pytest.raises(OwnerLimitReached) as limit:
        pool.submit(tiny_request(), owner="alice")
    assert limit.value.limit == 3 and "3 jobs" in str(limit.value)
    with pytest.raises(QueueFull) as full:
        pool.submit(tiny_request(), owner="carol")
    assert full.value.retry_after > 0

    for blocker in blockers:
        assert blocker.cancel()
    for job in (*blockers, *alice, bob):
        await settled(job)
    assert [blocker.state for blocker in blockers] == ["cancelled", "cancelled"]
    assert all(job.state == "done" for job in (*alice, bob))
    assert bob.started_at < alice[1].started_at < alice[2].started_at
    kinds = [(update.kind, update.position) async for update in bob_updates]
    assert kinds[:2] == [("queued", 1), ("started", 0)]


async def test_a_job_too_large_for_every_worker_is_refused_naming_the_size_that_fits(pool: Pool) -> None:
    with pytest.raises(JobTooLarge) as refused:
        pool.submit(tiny_request(size=4096), owner="dave")
    largest = refused.value.max_size
    assert 32 <= largest < 4096
    assert f"largest size that fits is {largest} px" in str(refused.value)
    assert pool.stats().queue_length == 0


async def test_submitting_reads_no_image_on_the_event_loop_and_uses_the_aspect_it_is_given(
    pool: Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    def opened(*args: object, **kwargs: object) -> None:
        raise AssertionError("the pool opened an image on the event loop")

    monkeypatch.setattr("nst_engine.memory.probe_image", opened)
    job = pool.submit(tiny_request(), owner="erin", content_aspect=0.75)
    assert await settled(job) == "done"
    largest = {}
    for aspect in (1.0, 0.25):
        with pytest.raises(JobTooLarge) as refused:
            pool.submit(tiny_request(size=4096), owner="erin", content_aspect=aspect)
        largest[aspect] = refused.value.max_size
    assert largest[0.25] > largest[1.0]


async def test_a_request_with_a_broken_image_fails_with_the_engine_s_message(pool: Pool) -> None:
    job = pool.submit(tiny_request(content=b"<html>not an image</html>"), owner="dave")
    assert await settled(job) == "failed"
    with pytest.raises(JobFailed) as failed:
        await job.result()
    assert "image" in str(failed.value).lower()


async def test_cancel_a_queued_job_at_once_and_a_running_one_within_an_evaluation(pool: Pool) -> None:
    running = [pool.submit(endless_request(), owner="erin") for _ in range(2)]
    for job in running:
        await first_progress(job)
    pids = worker_pids(pool)
    queued = pool.submit(tiny_request(), owner="frank")

    assert queued.cancel()
    assert queued.state == "cancelled"
    with pytest.raises(JobCancelled):
        await queued.result()
    assert [update.kind async for update in queued.updates()] == ["cancelled"]

    assert running[0].cancel()
    assert await settled(running[0]) == "cancelled"
    follow_up = pool.submit(tiny_request(), owner="frank")
    assert await settled(follow_up) == "done"
    assert follow_up.worker_id == running[0].worker_id
    assert running[1].cancel()
    assert await settled(running[1]) == "cancelled"
    assert not running[1].cancel()
    assert worker_pids(pool) == pids, "a cancelled job's worker should stop it, not be killed"


async def test_stats_describe_the_pool_and_count_each_outcome(pool: Pool) -> None:
    before = pool.stats()
    assert before.alive
    (place,) = before.workers_by_device
    assert before.workers_by_device == {place: 2}
    assert before.running_by_device == {place: 0}
    assert before.node_by_device[place] in before.nodes
    used, total = before.memory[place]
    assert 0 < used < total

    running = pool.submit(endless_request(), owner="stats")
    await first_progress(running)
    assert pool.stats().running_by_device == {place: 1}
    running.cancel()
    assert await settled(running) == "cancelled"
    assert await settled(pool.submit(tiny_request(), owner="stats")) == "done"
    assert await settled(pool.submit(tiny_request(content=b"not an image"), owner="stats")) == "failed"

    after = pool.stats()
    assert (after.completed, after.failed, after.cancelled) == (
        before.completed + 1,
        before.failed + 1,
        before.cancelled + 1,
    )
    assert after.running_by_device == {place: 0}


async def test_a_request_with_an_unknown_layer_fails_with_the_engine_s_message(pool: Pool) -> None:
    job = pool.submit(tiny_request(style_layers=("relu9_9",)), owner="dave")
    assert await settled(job) == "failed"
    assert "relu9_9" in job.error


async def test_the_time_limit_fails_a_job_that_runs_too_long(backend: str) -> None:
    pool = await Pool.start(one_worker(backend, job_timeout_s=2.0))
    try:
        slow = pool.submit(endless_request(), owner="ann")
        with pytest.raises(JobFailed, match="took longer than 2 s"):
            await slow.result()
        assert (pool.stats().completed, pool.stats().failed) == (0, 1)
    finally:
        await pool.close(drain=False)


async def test_close_with_drain_finishes_the_queue_then_refuses_new_work(backend: str) -> None:
    # The default time limit: on a loaded machine even a tiny job may take seconds.
    pool = await Pool.start(one_worker(backend))
    try:
        jobs = [pool.submit(tiny_request(size=32 + 4 * index), owner="ann") for index in range(3)]
        assert [job.state for job in jobs] == ["running", "queued", "queued"]
        pids = worker_pids(pool)
    finally:
        await pool.close(drain=True)

    assert [job.state for job in jobs] == ["done", "done", "done"]
    assert [(await job.result()).width for job in jobs] == [32, 36, 40]
    with pytest.raises(PoolClosed):
        pool.submit(tiny_request(), owner="ann")
    with pytest.raises(PoolClosed):
        await pool.wait_until_ready()
    stats = pool.stats()
    assert not stats.alive
    assert (stats.completed, stats.failed) == (3, 0)
    await all_exited(pids.values())


async def test_close_without_drain_cancels_running_and_queued_jobs(backend: str) -> None:
    pool = await Pool.start(one_worker(backend))
    running = pool.submit(endless_request(), owner="bea")
    queued = [pool.submit(tiny_request(), owner=owner) for owner in ("bea", "cid")]
    await first_progress(running)
    pids = worker_pids(pool)

    await pool.close(drain=False)

    assert [job.state for job in (running, *queued)] == ["cancelled"] * 3
    assert [update.kind async for update in running.updates()] == ["cancelled"]
    assert pool.stats().cancelled == 3
    await all_exited(pids.values())
    await pool.close(drain=False)
    with pytest.raises(PoolClosed):
        pool.submit(tiny_request(), owner="bea")
