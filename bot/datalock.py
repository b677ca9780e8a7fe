"""One bot per data folder: an exclusive lock held for the life of the process.

Two bots on the same folder would both resume the same jobs and answer each of them twice.
The lock is an ``flock`` on ``<data_dir>/.lock``: the kernel releases it when the process
ends however it ends, so a crash never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class DataFolderBusy(Exception):
    """Another process holds the data folder; ``str()`` says which, for the person starting the bot."""


class DataFolderLock:
    """The held lock; :meth:`release` (or the process's end) lets it go."""

    def __init__(self, fd: int, path: Path) -> None:
        self._fd = fd
        self.path = path

    @classmethod
    def acquire(cls, data_dir: str | os.PathLike[str]) -> DataFolderLock:
        """Lock ``data_dir`` (creating it), or raise :class:`DataFolderBusy` at once."""
        folder = Path(data_dir)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = folder / ".lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DataFolderBusy(
                f"another bot (process {holder}) is already using the data folder {str(folder)!r}; "
                "stop it first, or give this one its own storage.data_dir and storage.database"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(fd, path)

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
