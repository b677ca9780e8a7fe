"""Why the pool refused a job, or how a job ended badly. Messages are written for a person."""

from __future__ import annotations


class PoolError(Exception):
    """Base of every error the pool raises on purpose."""


class QueueFull(PoolError):
    """The queue holds as many jobs as it may; ``retry_after`` estimates when a place frees up."""

    def __init__(self, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(f"The queue is full; please try again in about {max(1, round(retry_after))} s.")


class OwnerLimitReached(PoolError):
    """The owner already has ``limit`` jobs queued or running."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        plural = "job" if limit == 1 else "jobs"
        super().__init__(f"You already have {limit} {plural} queued or running; wait for one to finish or cancel one.")


class JobTooLarge(PoolError):
    """No device has memory enough for the job; ``max_size`` is the largest long side that fits (0: none)."""

    def __init__(self, max_size: int, message: str | None = None) -> None:
        self.max_size = max_size
        if message is None:
            if max_size > 0:
                message = (
                    f"This job needs more memory than any worker has; the largest size that fits is {max_size} px."
                )
            else:
                message = "This job needs more memory than any worker has, even at the smallest size."
        super().__init__(message)


class PoolClosed(PoolError):
    """The pool is shutting down or shut down and takes no new jobs."""

    def __init__(self, message: str = "The renderer is shutting down and takes no new jobs.") -> None:
        super().__init__(message)


class JobFailed(PoolError):
    """The job ended with an error; ``message`` says why, for a person."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class JobCancelled(PoolError):
    """The job was cancelled before it finished."""

    def __init__(self, message: str = "The job was cancelled.") -> None:
        super().__init__(message)
