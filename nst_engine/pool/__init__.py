"""The executor pool: the only way asyncio code reaches the style-transfer engine.

    pool = await Pool.start(PoolConfig(devices=["cpu"], workers_per_device=2))
    job = pool.submit(request, owner="user-42")
    async for update in job.updates():
        ...
    result = await job.result()
    await pool.close(drain=True)
"""

from .config import PoolConfig, RayConfig
from .errors import JobCancelled, JobFailed, JobTooLarge, OwnerLimitReached, PoolClosed, PoolError, QueueFull
from .jobs import Job, JobUpdate
from .pool import Pool
from .stats import PoolStats

__all__ = [
    "Job",
    "JobCancelled",
    "JobFailed",
    "JobTooLarge",
    "JobUpdate",
    "OwnerLimitReached",
    "Pool",
    "PoolClosed",
    "PoolConfig",
    "PoolError",
    "PoolStats",
    "QueueFull",
    "RayConfig",
]
