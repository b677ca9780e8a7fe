"""Device names and how CPU cores are shared between workers."""

from __future__ import annotations

import sys

import pytest

from nst_engine.pool import PoolError
from nst_engine.pool.devices import available_cores, detect_devices, device_type, threads_per_worker


def test_device_types() -> None:
    assert device_type("cpu") == "cpu"
    assert device_type("cuda") == "cuda"
    assert device_type("cuda:1") == "cuda"
    with pytest.raises(ValueError, match="unknown device 'mps'"):
        device_type("mps")


def test_cpu_workers_split_the_cores_and_never_get_zero_threads() -> None:
    cores = available_cores()
    assert threads_per_worker(("cpu",), 1, None) == cores
    assert threads_per_worker(("cpu",), cores * 4, None) == 1
    assert threads_per_worker(("cpu", "cuda:0"), 2, None) == max(1, cores // 2)
    assert threads_per_worker(("cpu",), 2, 3) == 3


def test_gpu_workers_get_a_couple_of_threads() -> None:
    assert threads_per_worker(("cuda:0", "cuda:1"), 2, None) == 2


def test_detection_matches_torch_without_importing_it_here() -> None:
    torch_was_loaded = "torch" in sys.modules
    devices = detect_devices()
    assert ("torch" in sys.modules) == torch_was_loaded
    import torch

    expected = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else ["cpu"]
    assert list(devices) == expected


def test_a_failed_detection_says_so_in_words(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", "/bin/false")
    with pytest.raises(PoolError, match="Could not find out which devices to run on"):
        detect_devices()
