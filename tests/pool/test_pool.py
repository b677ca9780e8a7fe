"""The pool with two real CPU workers running the real engine on tiny images.

One pool serves the whole module (starting workers costs seconds); every test leaves it
idle, with both workers warm, for the next.
"""

from __future__ import annotations

import os
import resource
import signal

import pytest
import pytest_asyncio

from nst_engine.pool import (
    JobCancelled,
    JobFailed,
    JobTooLarge,
    OwnerLimitReached,
    Pool,
    PoolConfig,
    QueueFull,
)

from .conftest import endless_request, first_progress, settled, tiny_request, worker_pids

pytestmark = pytest.mark.asyncio(loop_scope="module")

MEMORY_LIMIT = 4 * 2**30
CONFIG = PoolConfig(
    devices=["cpu"],
    workers_per_device=2,
    cpu_threads=1,
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


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_pool():
    pool = await Pool.start(CONFIG)
    yield pool
    await pool.close(drain=False)


@pytest_asyncio.fixture(loop_scope="module")
async def pool(shared_pool: Pool):
    await shared_pool.wait_until_ready()
    yield shared_pool
    # A failed test may leave jobs behind: clear them so the next test starts clean, then say so.
    leftovers = list(shared_pool._active.values())
    for job in leftovers:
        job.cancel()
        await settled(job)
    assert not leftovers, f"the test left jobs queued or running: {leftovers}"


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


async def test_a_worker_killed_mid_job_fails_that_job_and_is_replaced(pool: Pool) -> None:
    job = pool.submit(endless_request(), owner="gina")
    await first_progress(job)
    pid = worker_pids(pool)[job.worker_id]
    os.kill(pid, signal.SIGKILL)

    with pytest.raises(JobFailed, match="crashed while running your job.*SIGKILL"):
        await job.result()
    after = pool.submit(tiny_request(), owner="gina")
    assert await settled(after) == "done"
    await pool.wait_until_ready()
    assert worker_pids(pool)[job.worker_id] not in (None, pid)
    assert pool.stats().workers_by_device == {"cpu": 2}


async def test_a_worker_that_stops_answering_is_killed_and_replaced(pool: Pool) -> None:
    job = pool.submit(endless_request(), owner="hank")
    await first_progress(job)
    pid = worker_pids(pool)[job.worker_id]
    os.kill(pid, signal.SIGSTOP)

    with pytest.raises(JobFailed, match="stopped responding"):
        await job.result()
    await pool.wait_until_ready()
    assert worker_pids(pool)[job.worker_id] != pid
    assert await settled(pool.submit(tiny_request(), owner="hank")) == "done"


async def test_out_of_memory_is_retried_once_smaller_then_reported_with_the_size(pool: Pool) -> None:
    # Cap each worker's heap at 40 MiB more than it holds now: one 64-channel activation of a
    # 512 px image is 50 MB, so torch's allocator refuses it (and again at 0.7 x 512 = 358 px).
    pids = worker_pids(pool)
    for pid in pids.values():
        resource.prlimit(pid, resource.RLIMIT_DATA, (heap_bytes(pid) + 40 * 2**20, resource.RLIM_INFINITY))
    try:
        job = pool.submit(tiny_request(size=512, steps=2), owner="ivy")
        assert await settled(job) == "failed"
    finally:
        for pid in pids.values():
            resource.prlimit(pid, resource.RLIMIT_DATA, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    assert "too large for the device's memory, even at 358 px" in job.error
    after = pool.submit(tiny_request(), owner="ivy")
    assert await settled(after) == "done"
    assert worker_pids(pool) == pids, "running out of memory is no reason to replace a worker"


def heap_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmData:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmData for process {pid}")


async def test_stats_describe_the_pool_and_count_each_outcome(pool: Pool) -> None:
    before = pool.stats()
    assert before.alive
    assert before.workers_by_device == {"cpu": 2}
    assert before.running_by_device == {"cpu": 0}
    used, total = before.memory["cpu"]
    assert 0 < used < total

    running = pool.submit(endless_request(), owner="stats")
    await first_progress(running)
    assert pool.stats().running_by_device == {"cpu": 1}
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
    assert after.running_by_device == {"cpu": 0}


async def test_a_request_with_an_unknown_layer_fails_with_the_engine_s_message(pool: Pool) -> None:
    job = pool.submit(tiny_request(style_layers=("relu9_9",)), owner="dave")
    assert await settled(job) == "failed"
    assert "relu9_9" in job.error
