"""Keeps a worker's progress stream quiet: a few updates a second, a preview every couple of seconds."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from ..request import Progress


class ProgressThrottle:
    """Decides which progress reports are worth sending.

    The first report always goes through (callers wait on it to know a job really runs);
    later ones at most every ``progress_interval_s``, and a preview rides along at most
    every ``preview_interval_s`` — otherwise it is dropped from the report.
    """

    def __init__(
        self,
        progress_interval_s: float,
        preview_interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._progress_interval_s = progress_interval_s
        self._preview_interval_s = preview_interval_s
        self._clock = clock
        self._last_progress: float | None = None
        self._last_preview: float | None = None

    def progress_due(self) -> bool:
        """Whether a report made now would be sent (so the engine need not read its losses otherwise)."""
        return self._last_progress is None or self._clock() - self._last_progress >= self._progress_interval_s

    def preview_due(self) -> bool:
        """Whether a preview made now would ride along (so the engine need not render one otherwise)."""
        return self._last_preview is None or self._clock() - self._last_preview >= self._preview_interval_s

    def admit(self, progress: Progress) -> Progress | None:
        """The report to send (maybe without its preview), or None to send nothing."""
        now = self._clock()
        if self._last_progress is not None and now - self._last_progress < self._progress_interval_s:
            return None
        self._last_progress = now
        if progress.preview is None:
            return progress
        if self._last_preview is not None and now - self._last_preview < self._preview_interval_s:
            return dataclasses.replace(progress, preview=None)
        self._last_preview = now
        return progress
