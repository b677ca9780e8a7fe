"""The pool on CUDA devices: detection, a job on the GPU, device memory in the stats."""

from __future__ import annotations

import pytest

from nst_engine.pool import Pool, PoolConfig

from .conftest import tiny_request

pytestmark = pytest.mark.gpu


async def test_the_pool_finds_the_gpus_and_runs_jobs_there() -> None:
    pool = await Pool.start(PoolConfig(workers_per_device=1, progress_every=1))
    try:
        assert pool.devices and all(device.startswith("cuda:") for device in pool.devices)
        job = pool.submit(tiny_request(size=64, steps=5), owner="gpu")
        result = await job.result()
        assert job.device in pool.devices
        assert result.device.startswith("cuda")
        assert (result.width, result.height) == (64, 48)
        stats = pool.stats()
        used, total = stats.memory[job.device]
        assert 0 < used <= total
        assert stats.workers_by_device == {device: 1 for device in pool.devices}
    finally:
        await pool.close()
