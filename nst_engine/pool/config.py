"""How an executor pool is sized and what limits it enforces."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Backend = Literal["local", "ray"]


@dataclass(frozen=True)
class RayConfig:
    """Where the ``ray`` backend finds its cluster and how many actors it runs there.

    ``address`` ``""`` starts a private single-node Ray inside this process, ``"auto"`` joins
    the cluster running on this host, ``"host:6379"`` the one whose head is there (this process
    joins it as a driver; Ray Client's ``ray://`` cannot stream the progress of a job).
    Each GPU gets ``workers_per_gpu`` actors, each asking Ray for that fraction of it; each
    node without a GPU gets ``cpu_workers`` actors, where -1 means one per such node when no
    node of the cluster has a GPU and none otherwise. The node list is read every
    ``node_poll_interval_s``: how soon a node that joined gets its actors.
    """

    address: str = ""
    workers_per_gpu: int = 1
    cpu_workers: int = -1
    namespace: str = "nst-bot"
    node_poll_interval_s: float = 2.0

    def __post_init__(self) -> None:
        if self.workers_per_gpu < 1:
            raise ValueError(f"workers_per_gpu must be at least 1, got {self.workers_per_gpu!r}")
        if self.cpu_workers < -1:
            raise ValueError(f"cpu_workers must be -1 (automatic), 0 or more, got {self.cpu_workers!r}")
        if not self.namespace:
            raise ValueError("namespace must not be empty")
        if self.node_poll_interval_s <= 0:
            raise ValueError(f"node_poll_interval_s must be positive, got {self.node_poll_interval_s!r}")


@dataclass(frozen=True)
class PoolConfig:
    """Settings of a :class:`~nst_engine.pool.Pool`.

    ``devices`` ``None`` means every CUDA device, or the CPU when there is none.
    ``cpu_threads`` ``None`` splits the machine's cores evenly between CPU workers.
    ``per_owner_limit`` counts queued and running jobs; ``queue_size`` only queued ones.
    Workers report progress every ``progress_every`` evaluations but send it at most every
    ``progress_interval_s``, with a preview at most every ``preview_interval_s``.
    A job cancelled or timed out that has not stopped ``kill_grace_s`` later is killed with
    its worker; a job out of GPU memory is retried once at ``oom_retry_scale`` times its size.
    ``memory_limit_bytes`` caps the memory admission control plans for on each device, for
    a device shared with other programs; None plans for all the device has. With
    ``max_batch`` above 1 each worker takes that many jobs at once and runs those of one shape
    as one batch (one forward and backward pass per step for all of them). ``shape_multiple``
    above 1 sets every request's ``shape_multiple`` (sides rounded to its multiples while the
    job runs), so jobs share shapes: cuDNN's tuning, CUDA graphs and batches.
    ``backend`` ``"local"`` runs worker processes on this machine (``devices``,
    ``workers_per_device``); ``"ray"`` runs actors on a Ray cluster as ``ray`` says (each
    taking up to ``max_batch`` jobs, as a local worker does).
    """

    devices: tuple[str, ...] | list[str] | None = None
    workers_per_device: int = 1
    queue_size: int = 32
    per_owner_limit: int = 3
    job_timeout_s: float = 600.0
    preview_interval_s: float = 2.0
    heartbeat_timeout_s: float = 30.0
    weights: str = "caffe"
    cpu_threads: int | None = None
    progress_every: int = 10
    progress_interval_s: float = 0.5
    startup_timeout_s: float = 300.0
    kill_grace_s: float = 10.0
    oom_retry_scale: float = 0.7
    memory_limit_bytes: int | None = None
    max_batch: int = 1
    backend: Backend = "local"
    ray: RayConfig = field(default_factory=RayConfig)
    shape_multiple: int = 1

    def __post_init__(self) -> None:
        if self.backend not in ("local", "ray"):
            raise ValueError(f"backend must be 'local' or 'ray', got {self.backend!r}")
        if self.devices is not None:
            if not self.devices:
                raise ValueError("devices must name at least one device, or be None to detect them")
            object.__setattr__(self, "devices", tuple(self.devices))
        positive = {
            "workers_per_device": self.workers_per_device,
            "queue_size": self.queue_size,
            "per_owner_limit": self.per_owner_limit,
            "job_timeout_s": self.job_timeout_s,
            "preview_interval_s": self.preview_interval_s,
            "heartbeat_timeout_s": self.heartbeat_timeout_s,
            "progress_every": self.progress_every,
            "progress_interval_s": self.progress_interval_s,
            "startup_timeout_s": self.startup_timeout_s,
            "kill_grace_s": self.kill_grace_s,
            "max_batch": self.max_batch,
            "shape_multiple": self.shape_multiple,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"{name} must be positive, got {value!r}")
        if self.cpu_threads is not None and self.cpu_threads < 1:
            raise ValueError(f"cpu_threads must be at least 1, got {self.cpu_threads!r}")
        if self.memory_limit_bytes is not None and self.memory_limit_bytes <= 0:
            raise ValueError(f"memory_limit_bytes must be positive, got {self.memory_limit_bytes!r}")
        if not 0 < self.oom_retry_scale < 1:
            raise ValueError(f"oom_retry_scale must be between 0 and 1, got {self.oom_retry_scale!r}")
