"""Starting local pools, and workers that cannot start; each test owns a one-worker pool."""

from __future__ import annotations

import os
import signal

import pytest

from nst_engine.pool import Pool, PoolConfig, PoolError

from .conftest import endless_request, first_progress, settled, tiny_request, worker_pids


def one_worker(**settings: object) -> PoolConfig:
    base: dict[str, object] = dict(
        devices=["cpu"], workers_per_device=1, cpu_threads=1, progress_every=1, progress_interval_s=0.05
    )
    base.update(settings)
    return PoolConfig(**base)


async def test_a_worker_that_cannot_load_its_weights_fails_the_start_clearly(tmp_path) -> None:
    missing = tmp_path / "vgg19.pth"
    with pytest.raises(PoolError, match="vgg19.pth"):
        await Pool.start(one_worker(weights=str(missing)))


async def test_unknown_devices_are_refused_before_anything_starts() -> None:
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        await Pool.start(one_worker(devices=["tpu"]))


def test_nonsensical_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="queue_size"):
        PoolConfig(queue_size=0)
    with pytest.raises(ValueError, match="oom_retry_scale"):
        PoolConfig(oom_retry_scale=1.5)
    with pytest.raises(ValueError, match="devices"):
        PoolConfig(devices=[])


def save_vgg19_as_torchvision_file(path) -> None:
    """The engine's VGG19 saved in torchvision's layout: weights a test can take away and give back."""
    import torch

    from nst_engine.vgg import CONV_LAYERS, LAYER_INDEX, load_vgg19

    model = load_vgg19("caffe", "cpu")
    state = {}
    for name in CONV_LAYERS:
        conv = model.module(name)
        state[f"features.{LAYER_INDEX[name]}.weight"] = conv.weight.detach().clone()
        state[f"features.{LAYER_INDEX[name]}.bias"] = conv.bias.detach().clone()
    torch.save(state, path)


async def test_workers_that_keep_failing_to_start_fail_the_queue_until_one_starts_again(tmp_path) -> None:
    weights = tmp_path / "vgg19.pth"
    save_vgg19_as_torchvision_file(weights)
    pool = await Pool.start(one_worker(weights=str(weights)))
    try:
        hidden = weights.rename(tmp_path / "elsewhere.pth")
        crashing = pool.submit(endless_request(), owner="dan")
        await first_progress(crashing)
        os.kill(worker_pids(pool)["cpu/0"], signal.SIGKILL)
        assert await settled(crashing) == "failed"
        waiting = pool.submit(tiny_request(), owner="dan")

        assert await settled(waiting) == "failed"
        assert "No renderer is available right now" in waiting.error
        assert "vgg19.pth" in waiting.error
        refused = pool.submit(tiny_request(), owner="dan")
        assert refused.state == "failed"

        hidden.rename(weights)
        await pool.wait_until_ready()
        assert await settled(pool.submit(tiny_request(), owner="dan")) == "done"
    finally:
        await pool.close(drain=False)
