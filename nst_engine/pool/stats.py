"""A snapshot of the pool for status commands and metrics."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PoolStats:
    """``memory`` maps each device to (bytes in use, bytes in total): a GPU's as a whole,
    or for the CPU the workers' resident memory against the host's RAM."""

    queue_length: int
    running_by_device: dict[str, int]
    workers_by_device: dict[str, int]
    memory: dict[str, tuple[int, int]]
    completed: int
    failed: int
    cancelled: int
    recent_durations: list[float]
    alive: bool
