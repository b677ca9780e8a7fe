"""Small real requests for the pool tests: synthetic PNGs, tiny sizes, few steps."""

from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest
from PIL import Image

from nst_engine.pool import Job, JobUpdate, Pool, PoolConfig
from nst_engine.pool.config import RayConfig
from nst_engine.request import StyleRequest

BACKENDS = ("local", "ray")

# Far more evaluations than any test waits for: such a job runs until it is stopped.
ENDLESS_STEPS = 10_000


def png(width: int, height: int, seed: int) -> bytes:
    """A smooth random picture, so VGG sees something other than flat colour."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


CONTENT = png(64, 48, seed=1)
STYLE = png(48, 48, seed=2)


def tiny_request(size: int = 32, steps: int = 3, **overrides: object) -> StyleRequest:
    """A request that runs in well under a second on one CPU thread."""
    settings: dict[str, object] = dict(
        content=CONTENT, styles=(STYLE,), size=size, steps=steps, seed=0, multiscale=False
    )
    settings.update(overrides)
    return StyleRequest(**settings)


def endless_request(size: int = 40) -> StyleRequest:
    return tiny_request(size=size, steps=ENDLESS_STEPS)


async def first_progress(job: Job) -> JobUpdate:
    """Wait until the job reports its first evaluation (it is really running then)."""
    async for update in job.updates():
        if update.kind == "progress" or (update.kind == "started" and update.progress is not None):
            return update
        if update.kind in ("finished", "failed", "cancelled"):
            pytest.fail(f"{job!r} ended ({update.kind}: {update.error}) before reporting progress")
    pytest.fail(f"{job!r} stopped updating before reporting progress")


async def clear_leftovers(pool: Pool) -> None:
    """Cancel what a test left queued or running, so the next test starts clean, then fail that test."""
    leftovers = list(pool._active.values())
    for job in leftovers:
        job.cancel()
        await settled(job)
    assert not leftovers, f"the test left jobs queued or running: {leftovers}"


async def settled(job: Job, timeout_s: float = 120.0) -> str:
    """The job's final state; the timeout only guards against a hang, it measures nothing."""
    async with asyncio.timeout(timeout_s):
        return await job.wait()


def worker_pids(pool: Pool) -> dict[str, int | None]:
    """Process ids by worker slot. Peeks inside the process backend: fault injection needs pids."""
    return {worker.id: worker.pid for worker in pool._workers.values()}


def config_for(backend: str, workers: int, **settings: object) -> PoolConfig:
    """A pool of ``workers`` one-thread CPU workers: local processes, or actors on the session's Ray."""
    if backend == "ray":
        settings.update(backend="ray", ray=RayConfig(cpu_workers=workers, node_poll_interval_s=0.5))
    else:
        settings.update(devices=["cpu"], workers_per_device=workers)
    return PoolConfig(cpu_threads=1, **settings)


def use_backend(request: pytest.FixtureRequest, backend: str) -> str:
    """``backend``, once what it needs is up (the session's Ray for ``ray``)."""
    if backend == "ray":
        request.getfixturevalue("ray_cluster")
    return backend


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each backend in turn, for a test that starts pools of its own."""
    return use_backend(request, request.param)
