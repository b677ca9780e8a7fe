"""A snapshot of the pool for status commands and metrics."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PoolStats:
    """``memory`` maps each device to (bytes in use, bytes in total): a GPU's as a whole,
    or for the CPU the workers' resident memory against the host's RAM. ``batches_by_device``
    lists the sizes of the batches running on each device; ``batch_sizes`` counts the jobs
    started so far by the size of the batch they joined.

    A device is named as the backend places it: ``cuda:0`` on this machine, or
    ``<node>/cuda:0`` on a node of a cluster; ``node_by_device`` says which node each one is
    on, and ``nodes`` lists the nodes that have worker slots (``local`` for this machine).
    """

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
    backend: str = "local"
    nodes: tuple[str, ...] = ()
    node_by_device: dict[str, str] = field(default_factory=dict)

    def workers_by_node(self) -> dict[str, int]:
        """Warm workers on each node that has worker slots (0 for one whose workers are starting)."""
        counts = dict.fromkeys(self.nodes, 0)
        for device, count in self.workers_by_device.items():
            node = self.node_by_device.get(device, "local")
            counts[node] = counts.get(node, 0) + count
        return counts
