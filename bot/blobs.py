"""Files the durable store points at: source images (by content hash) and finished images.

Source images are stored once per content, so the buttons under a result (re-run, more
style...) can start new jobs from them days later without asking Discord again.
Every write goes to a temporary file first and is renamed into place, so a crash never
leaves half a file under a real name; a write that fails (a full disk) removes its
temporary file, and the clean-up removes any a crash left behind.  Methods are
synchronous: call them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

# A temporary file older than this belongs to no write still in progress.
_STALE_TEMPORARY_S = 3600.0


class BlobStore:
    """Files under ``root``: ``sources/<sha256>`` and ``results/<job id>.png``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._sources = self.root / "sources"
        self._results = self.root / "results"
        for folder in (self._sources, self._results):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)

    def put_source(self, data: bytes) -> str:
        """Store a source image; return its key (the SHA-256 of its bytes)."""
        key = hashlib.sha256(data).hexdigest()
        path = self._sources / key
        try:
            # Already stored: make it young again, so a clean-up between now and the new job's row keeps it.
            os.utime(path)
        except FileNotFoundError:
            _write_atomically(path, data)
        return key

    def source(self, key: str) -> bytes:
        return self.source_path(key).read_bytes()

    def source_path(self, key: str) -> Path:
        """Where the source image ``key`` is stored (it may be gone: check with :meth:`has_source`)."""
        return self._sources / key

    def has_source(self, key: str) -> bool:
        return self.source_path(key).is_file()

    def stored_bytes(self, source_keys: Iterable[str], job_ids: Iterable[str]) -> int:
        """Bytes on disk of these source images and of these jobs' results (missing ones count 0)."""
        paths = [self._sources / key for key in set(source_keys)]
        paths += [self._results / f"{job_id}.png" for job_id in set(job_ids)]
        total = 0
        for path in paths:
            try:
                total += path.stat().st_size
            except FileNotFoundError:
                pass
        return total

    def free_bytes(self) -> int:
        """Free space on the disk holding the store."""
        return shutil.disk_usage(self.root).free

    def put_result(self, job_id: str, png: bytes) -> None:
        _write_atomically(self._results / f"{job_id}.png", png)

    def result(self, job_id: str) -> bytes | None:
        path = self._results / f"{job_id}.png"
        return path.read_bytes() if path.exists() else None

    def delete_results(self, job_ids: list[str]) -> None:
        for job_id in job_ids:
            (self._results / f"{job_id}.png").unlink(missing_ok=True)

    def delete_sources_except(self, keep: set[str], min_age_s: float = 3600.0) -> int:
        """Remove source images no remaining job refers to; return how many were removed.

        Files younger than ``min_age_s`` stay: a job being accepted stores its images just
        before its row, and must not lose them to a clean-up running in between.
        """
        cutoff = time.time() - min_age_s
        removed = 0
        for path in self._sources.iterdir():
            if path.name in keep or path.name.endswith(".tmp") or _mtime(path) > cutoff:
                continue
            path.unlink(missing_ok=True)
            removed += 1
        return removed

    def delete_stale_temporaries(self, min_age_s: float = _STALE_TEMPORARY_S) -> int:
        """Remove temporary files a crashed write left behind; return how many were removed."""
        cutoff = time.time() - min_age_s
        removed = 0
        for folder in (self._sources, self._results):
            for path in folder.glob("*.tmp"):
                if _mtime(path) < cutoff:
                    path.unlink(missing_ok=True)
                    removed += 1
        return removed


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return float("inf")


def _write_atomically(path: Path, data: bytes) -> None:
    # Unique per write: two requests with the same image store the same blob from two threads at once.
    temporary = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with temporary.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        # Where the write failed, removing may fail too (the folder is gone): the first error is the one to see.
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        raise
