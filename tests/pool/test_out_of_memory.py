"""A job that runs out of GPU memory is retried once at a smaller size, and then succeeds.

There is no GPU here, so the worker gets a simulated device: a ``sitecustomize`` on its
``PYTHONPATH`` makes every convolution over more than ``CAPACITY_PIXELS`` pixels raise
``torch.OutOfMemoryError``, the error CUDA's allocator raises. Everything else (the real
engine turning that into its own error, the pool's retry at ``oom_retry_scale``) is real.
tests/engine/test_gpu.py covers a real GPU.
"""

from __future__ import annotations

import os

import pytest

from nst_engine.pool import Pool, PoolConfig

from .conftest import settled, tiny_request

# The content image is 4:3. At 128 px it is 128 x 96 = 12288 pixels (over); at 0.7 x 128 = 89 px, 89 x 67 or so
# (under). The pool retries no smaller than 64 px.
CAPACITY_PIXELS = 8000
SMALL_DEVICE = f'''
import torch

_forward = torch.nn.Conv2d._conv_forward


def _conv_forward(self, input, weight, bias):
    if input.shape[-2] * input.shape[-1] > {CAPACITY_PIXELS}:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated for the tests)")
    return _forward(self, input, weight, bias)


torch.nn.Conv2d._conv_forward = _conv_forward
'''


@pytest.fixture
async def small_device_pool(tmp_path, monkeypatch):
    """A one-worker CPU pool whose worker behaves like a device with room for CAPACITY_PIXELS."""
    (tmp_path / "sitecustomize.py").write_text(SMALL_DEVICE)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    config = PoolConfig(devices=["cpu"], workers_per_device=1, cpu_threads=1, oom_retry_scale=0.7)
    pool = await Pool.start(config)
    try:
        yield pool
    finally:
        await pool.close(drain=False)


async def test_a_job_out_of_memory_is_retried_once_smaller_and_delivered(small_device_pool):
    pool = small_device_pool
    fits = pool.submit(tiny_request(size=32, steps=2), owner="fits")
    assert await settled(fits) == "done"
    assert (await fits.result()).width == 32, "a job that fits must run at its own size"

    job = pool.submit(tiny_request(size=128, steps=2), owner="too-big")
    assert await settled(job) == "done", job.error
    result = await job.result()
    assert result.width == 89, "retried once, at 0.7 of its size"
    assert result.evaluations == 2

    hopeless = pool.submit(tiny_request(size=256, steps=2), owner="far-too-big")
    assert await settled(hopeless) == "failed"
    assert "too large for the device's memory, even at 179 px" in hopeless.error
    stats = pool.stats()
    assert (stats.completed, stats.failed) == (2, 1)
