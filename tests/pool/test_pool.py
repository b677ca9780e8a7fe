"""Faults of local worker processes: killed, frozen, out of memory. Two real CPU workers.

What every backend promises is in test_contract.py; these tests need the processes' pids.
One pool serves the whole module (starting workers costs seconds); every test leaves it
idle, with both workers warm, for the next.
"""

from __future__ import annotations

import os
import resource
import signal

import pytest
import pytest_asyncio

from nst_engine.pool import JobFailed, Pool, PoolConfig

from .conftest import clear_leftovers, endless_request, first_progress, settled, tiny_request, worker_pids

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


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_pool():
    pool = await Pool.start(CONFIG)
    yield pool
    await pool.close(drain=False)


@pytest_asyncio.fixture(loop_scope="module")
async def pool(shared_pool: Pool):
    await shared_pool.wait_until_ready()
    yield shared_pool
    await clear_leftovers(shared_pool)


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
