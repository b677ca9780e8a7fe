"""A snapshot of the pool for status commands and metrics."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PoolStats:
    """``memory`` maps each device to (bytes in use, bytes in total): a GPU's as a whole,
    or for the CPU the workers' resident memory against the host's RAM. ``batches_by_device``
    lists the sizes of the batches running on each device; ``batch_sizes`` counts the jobs
    started so far by the size of the batch they joined."""

    queue_length: int
    running_by_device: dict[str, int]
    workers_by_device: dict[str, int]
    memory: dict[str, tuple[int, int]]
    completed: int
    failed: int
    cancelled: int
    recent_durations: list[float]
    alive: bool
    batches_by_device: dict[str, list[int]] = field(default_factory=dict)
    batch_sizes: dict[int, int] = field(default_factory=dict)
