"""Workers that batch jobs of one shape (``max_batch``): local processes and Ray actors alike;
and memory admission counting running jobs."""

from __future__ import annotations

import asyncio

import pytest

from nst_engine.memory import estimate_peak_bytes
from nst_engine.pool import Job, Pool, PoolConfig

from .conftest import config_for, endless_request, first_progress, settled, tiny_request

pytestmark = pytest.mark.asyncio(loop_scope="module")

SETTINGS = dict(
    queue_size=8,
    per_owner_limit=4,
    progress_every=1,
    progress_interval_s=0.05,
    heartbeat_timeout_s=10.0,
    kill_grace_s=5.0,
)
BASE = dict(devices=["cpu"], cpu_threads=1, **SETTINGS)


async def progressed_past(job: Job, iteration: int) -> None:
    """Wait until ``job`` reports an evaluation after ``iteration`` (it is still being optimised)."""
    async with asyncio.timeout(120):
        while job.last_progress is None or job.last_progress.iteration <= iteration:
            await asyncio.sleep(0.05)


async def test_jobs_of_one_shape_share_a_batch_and_leave_it_on_their_own(backend: str) -> None:
    pool = await Pool.start(config_for(backend, 1, max_batch=3, **SETTINGS))
    try:
        jobs = [pool.submit(endless_request(), owner=f"owner{i}") for i in range(3)]
        for job in jobs:
            await first_progress(job)
        assert {job.worker_id for job in jobs} == {jobs[0].worker_id}
        assert list(pool.stats().batches_by_device.values()) == [[3]]
        assert pool.stats().batch_sizes == {1: 1, 2: 1, 3: 1}

        assert jobs[1].cancel()
        assert await settled(jobs[1]) == "cancelled"
        for job in (jobs[0], jobs[2]):
            await progressed_past(job, job.last_progress.iteration)
        assert list(pool.stats().batches_by_device.values()) == [[2]]

        # A finite job joins the running batch at once and finishes while the others go on.
        short = pool.submit(tiny_request(size=40, steps=4), owner="late")
        result = await short.result()
        assert result.evaluations == 4 and (result.width, result.height) == (40, 30)
        assert jobs[0].state == jobs[2].state == "running"
        for job in (jobs[0], jobs[2]):
            job.cancel()
            assert await settled(job) == "cancelled"
    finally:
        await pool.close(drain=False)


async def test_batched_jobs_of_two_shapes_each_get_what_they_asked_for(backend: str) -> None:
    pool = await Pool.start(config_for(backend, 1, max_batch=4, **SETTINGS))
    try:
        requests = [
            tiny_request(size=32, steps=3, seed=1),
            tiny_request(size=32, steps=5, seed=2),
            tiny_request(size=48, steps=4),
            tiny_request(size=32, steps=3, content=b"not an image"),
        ]
        jobs = [pool.submit(request, owner=f"owner{i}") for i, request in enumerate(requests)]
        outcomes = [await settled(job) for job in jobs]
        assert outcomes == ["done", "done", "done", "failed"]
        results = [await job.result() for job in jobs[:3]]
        assert [(r.width, r.height, r.evaluations) for r in results] == [(32, 24, 3), (32, 24, 5), (48, 36, 4)]
        assert "image" in jobs[3].error
    finally:
        await pool.close(drain=False)


async def test_a_job_waits_while_running_jobs_hold_the_memory_it_needs() -> None:
    estimate = estimate_peak_bytes(endless_request(), "cpu", 1.0)
    config = PoolConfig(workers_per_device=2, memory_limit_bytes=int(estimate * 1.5), **BASE)
    pool = await Pool.start(config)
    try:
        first = pool.submit(endless_request(), owner="first")
        await first_progress(first)
        second = pool.submit(endless_request(), owner="second")
        await asyncio.sleep(1.0)
        assert second.state == "queued", "two jobs that together exceed the memory must not both start"
        assert first.cancel()
        assert await settled(first) == "cancelled"
        await first_progress(second)
        second.cancel()
        assert await settled(second) == "cancelled"
    finally:
        await pool.close(drain=False)


async def test_cpu_workers_are_filled_evenly_before_jobs_share_a_batch() -> None:
    # CPU workers each have cores of their own: two jobs on two workers beat a batch of two on one.
    pool = await Pool.start(PoolConfig(workers_per_device=2, max_batch=2, **BASE))
    try:
        jobs = [pool.submit(endless_request(), owner=f"owner{i}") for i in range(2)]
        for job in jobs:
            await first_progress(job)
        assert jobs[0].worker_id != jobs[1].worker_id
        assert pool.stats().batches_by_device == {"cpu": [1, 1]}
        for job in jobs:
            job.cancel()
            assert await settled(job) == "cancelled"
    finally:
        await pool.close(drain=False)
