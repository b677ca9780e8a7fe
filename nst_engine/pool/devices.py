"""Which devices the pool runs on, and what each one offers."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Literal

from .errors import PoolError

DeviceType = Literal["cpu", "cuda"]


_COUNT_CUDA_DEVICES = "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)"


def detect_devices() -> tuple[str, ...]:
    """Every CUDA device, or the CPU when there is none; PoolError when that cannot be found out.

    Asked in a short-lived child so the caller's process (the bot's event loop) never
    imports torch or touches the CUDA driver.
    """
    try:
        answer = subprocess.run(
            [sys.executable, "-c", _COUNT_CUDA_DEVICES], capture_output=True, text=True, check=True, timeout=120
        )
        count = int(answer.stdout.strip() or 0)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        raise PoolError(
            "Could not find out which devices to run on (is PyTorch installed and working?). "
            "Name them in the pool's devices setting, e.g. ['cpu'] or ['cuda:0']."
        ) from exc
    return tuple(f"cuda:{index}" for index in range(count)) or ("cpu",)


def device_type(device: str) -> DeviceType:
    """``"cuda"`` for ``cuda`` / ``cuda:N``, ``"cpu"`` for ``cpu``; anything else is refused."""
    kind = device.split(":", 1)[0]
    if kind == "cuda":
        return "cuda"
    if device == "cpu":
        return "cpu"
    raise ValueError(f"unknown device {device!r}: use 'cpu', 'cuda' or 'cuda:N'")


def available_cores() -> int:
    """Cores this process may run on (honours CPU affinity and container limits set that way)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def threads_per_worker(devices: tuple[str, ...], workers_per_device: int, configured: int | None) -> int:
    """Torch threads for each worker: ``configured``, else the cores split between CPU workers.

    GPU workers only feed their device, so a couple of threads each is plenty.
    """
    if configured is not None:
        return configured
    cpu_workers = sum(workers_per_device for device in devices if device_type(device) == "cpu")
    if cpu_workers == 0:
        return 2
    return max(1, available_cores() // cpu_workers)


def host_memory_bytes() -> int:
    """Physical memory of the machine."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def resident_bytes() -> int:
    """Resident set size of this process."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
