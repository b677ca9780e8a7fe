"""Measured speed of each device, and the finish times it predicts for the queue.

A job's work is ``size² × steps``; each device keeps an exponentially weighted average of
seconds per unit of work, so a 1024 px job is not predicted to take as long as a 256 px one.
Jobs whose work cannot be known fall back to an average of plain durations.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass


class _Ewma:
    def __init__(self, alpha: float) -> None:
        self._alpha = alpha
        self.value: float | None = None

    def add(self, sample: float) -> None:
        self.value = sample if self.value is None else self._alpha * sample + (1 - self._alpha) * self.value


class ThroughputModel:
    """Per-device averages of job durations, fed with every finished job."""

    def __init__(self, alpha: float = 0.3, history: int = 50) -> None:
        self._alpha = alpha
        self._per_work: dict[str, _Ewma] = {}
        self._per_job: dict[str, _Ewma] = {}
        self.recent_durations: deque[float] = deque(maxlen=history)

    def record(self, device: str, seconds: float, work: float | None) -> None:
        """Add one finished job's wall-clock duration on ``device``."""
        self.recent_durations.append(seconds)
        self._per_job.setdefault(device, _Ewma(self._alpha)).add(seconds)
        if work:
            self._per_work.setdefault(device, _Ewma(self._alpha)).add(seconds / work)

    def expected_seconds(self, device: str, work: float | None) -> float | None:
        """Predicted duration of a job of ``work`` on ``device``; other devices' figures stand in
        for a device not measured yet; None before any job finished."""
        if work:
            rate = self._mean_for(self._per_work, device)
            if rate is not None:
                return rate * work
        return self._mean_for(self._per_job, device)

    @staticmethod
    def _mean_for(averages: dict[str, _Ewma], device: str) -> float | None:
        own = averages.get(device)
        if own is not None and own.value is not None:
            return own.value
        others = [average.value for average in averages.values() if average.value is not None]
        return sum(others) / len(others) if others else None


@dataclass(frozen=True)
class Slot:
    """A worker as the projection sees it: its device and how long until it is free."""

    device: str
    busy_for: float | None


def project_finish(
    slots: Sequence[Slot],
    queued_work: Sequence[float | None],
    model: ThroughputModel,
) -> list[float | None]:
    """Seconds until each queued job (in dispatch order) would finish, by list scheduling:
    every job goes to the slot that frees up first. None where an estimate is missing."""
    free_at = [slot.busy_for for slot in slots]
    devices = [slot.device for slot in slots]
    finishes: list[float | None] = []
    for work in queued_work:
        if not free_at or any(t is None for t in free_at):
            finishes.append(None)
            continue
        index = min(range(len(free_at)), key=lambda i: free_at[i])
        duration = model.expected_seconds(devices[index], work)
        if duration is None:
            finishes.append(None)
            continue
        free_at[index] += duration
        finishes.append(free_at[index])
    return finishes
