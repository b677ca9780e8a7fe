"""Faults only a cluster has: actors killed, nodes joining and leaving, Ray itself out of reach.

Everything runs on the session's small Ray; nodes a test adds to it (with GPUs they do not
have, so the actors are placed per GPU but run on the CPU) are removed before it ends.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import AsyncIterator

import pytest
from ray import ray_constants

from nst_engine.pool import JobFailed, JobUpdate, Pool, PoolConfig, PoolError, RayConfig

from .conftest import config_for, endless_request, first_progress, settled, tiny_request, worker_pids

FINAL = {"finished", "failed", "cancelled"}
FAST = dict(progress_every=1, progress_interval_s=0.05, heartbeat_timeout_s=4.0, kill_grace_s=5.0)
# Long enough to still be running when a test breaks something under it, short enough to then finish.
LONG_STEPS = 60


def node_args() -> dict[str, object]:
    from tests.conftest import RAY_OBJECT_STORE_BYTES

    return {"num_cpus": 1, "num_gpus": 1, "object_store_memory": RAY_OBJECT_STORE_BYTES}


def node_of(worker_id: str | None) -> str:
    """The node label a Ray slot id starts with."""
    assert worker_id is not None
    return worker_id.split("/", 1)[0]


async def running_again(updates: AsyncIterator[JobUpdate]) -> None:
    """Until a job whose worker was lost starts again, elsewhere, and reports progress there."""
    async for update in updates:
        if update.kind == "started":
            break
        assert update.kind not in FINAL, f"the job ended ({update.kind}: {update.error}) instead of running again"
    async for update in updates:
        if update.kind == "progress":
            return
        assert update.kind not in FINAL, f"the job ended ({update.kind}: {update.error}) instead of running again"


async def until(condition, what: str) -> None:
    """Poll ``condition`` until it holds; the timeout only guards against a hang."""
    try:
        async with asyncio.timeout(60):
            while not condition():
                await asyncio.sleep(0.2)
    except TimeoutError:
        pytest.fail(f"waited in vain for {what}")


async def test_an_actor_killed_mid_job_runs_the_job_once_more_elsewhere(ray_cluster) -> None:
    pool = await Pool.start(config_for("ray", 2, **FAST))
    try:
        job = pool.submit(tiny_request(steps=LONG_STEPS), owner="ann")
        updates = job.updates()
        await first_progress(job)
        first_worker = job.worker_id
        os.kill(worker_pids(pool)[first_worker], signal.SIGKILL)

        history = [update async for update in updates]
        assert [update.kind for update in history if update.kind in FINAL] == ["finished"]
        assert [update.kind for update in history].count("started") == 2
        assert job.state == "done" and (await job.result()).evaluations == LONG_STEPS
        await pool.wait_until_ready()
        assert pool.stats().workers_by_device == {next(iter(pool.stats().workers_by_device)): 2}

        # A job is run again once, not for ever: lost a second time, it fails and says why.
        twice = pool.submit(endless_request(), owner="ann")
        updates = twice.updates()
        await first_progress(twice)
        os.kill(worker_pids(pool)[twice.worker_id], signal.SIGKILL)
        await running_again(updates)
        os.kill(worker_pids(pool)[twice.worker_id], signal.SIGKILL)
        with pytest.raises(JobFailed, match="was lost while running your job"):
            await twice.result()
    finally:
        await pool.close(drain=False)


async def test_jobs_spread_over_gpu_nodes_that_come_and_go(ray_cluster) -> None:
    nodes = [ray_cluster.add_node(**node_args()) for _ in range(2)]
    pool = None
    try:
        ray_cluster.wait_for_nodes()
        config = PoolConfig(
            backend="ray", ray=RayConfig(cpu_workers=0, node_poll_interval_s=0.5), cpu_threads=1, **FAST
        )
        pool = await Pool.start(config)
        stats = pool.stats()
        assert stats.backend == "ray" and len(stats.nodes) == 2
        assert stats.workers_by_node() == dict.fromkeys(stats.nodes, 1)

        long_job = pool.submit(tiny_request(steps=LONG_STEPS), owner="bea")
        blocker = pool.submit(endless_request(), owner="cid")
        await first_progress(long_job)
        await first_progress(blocker)
        assert node_of(long_job.worker_id) != node_of(blocker.worker_id), "one job on each node"
        updates = long_job.updates()

        # The long job's node leaves: the job goes back to the head of the queue, and runs
        # once the other node's worker is free.
        lost = next(n for n in nodes if node_of(long_job.worker_id).endswith(n.node_id[:6]))
        ray_cluster.remove_node(lost)
        async for update in updates:
            if update.kind == "queued":
                break
        assert long_job.state == "queued" and long_job.position == 1
        assert blocker.cancel()
        assert await settled(long_job) == "done"
        assert node_of(long_job.worker_id) == node_of(blocker.worker_id)
        finals = [u.kind async for u in long_job.updates()]
        assert finals == ["finished"]
        assert len(pool.stats().nodes) == 1

        # A node joining gets a worker without a restart.
        nodes.remove(lost)
        nodes.append(ray_cluster.add_node(**node_args()))
        await until(lambda: len(pool.stats().nodes) == 2, "a worker to start on the new node")
        await pool.wait_until_ready()
        assert pool.stats().workers_by_node() == dict.fromkeys(pool.stats().nodes, 1)
        assert await settled(pool.submit(tiny_request(), owner="bea")) == "done"

        # With the last node gone, nothing is left to run a job on: it fails and says so.
        ray_cluster.remove_node(nodes.pop(0))
        await until(lambda: len(pool.stats().nodes) == 1, "the pool to notice the node left")
        running = pool.submit(endless_request(), owner="dan")
        await first_progress(running)
        ray_cluster.remove_node(nodes.pop())
        assert await settled(running) == "failed"
        assert "No renderer is available right now" in running.error
    finally:
        if pool is not None:
            await pool.close(drain=False)
        for node in nodes:
            ray_cluster.remove_node(node)


async def test_losing_the_cluster_s_control_plane_reads_as_down_and_jobs_wait(ray_cluster) -> None:
    pool = await Pool.start(config_for("ray", 1, **FAST))
    gcs = ray_cluster.head_node.all_processes[ray_constants.PROCESS_TYPE_GCS_SERVER][0].process
    try:
        assert pool.stats().alive
        os.kill(gcs.pid, signal.SIGSTOP)
        try:
            await until(lambda: not pool.stats().alive, "the pool to read as down")
            job = pool.submit(tiny_request(), owner="eve")
        finally:
            os.kill(gcs.pid, signal.SIGCONT)
        assert await settled(job) == "done"
        await until(lambda: pool.stats().alive, "the pool to recover")
    finally:
        await pool.close(drain=False)


async def test_an_unreachable_address_fails_the_start_in_one_sentence_naming_it() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{sock.getsockname()[1]}"
    with pytest.raises(PoolError) as refused:
        await Pool.start(PoolConfig(backend="ray", ray=RayConfig(address=address)))
    message = str(refused.value)
    assert address in message and message.count(". ") == 0 and message.endswith(".")
