"""The durable job store: SQLite (stdlib) holding every accepted job and per-server settings.

Each public method is a coroutine that runs its SQL on one dedicated thread, so a slow
disk never stalls the event loop and the single connection is never shared between
threads.  Every state change is one committed statement: after a crash the database
says exactly how far each job got.  The file is readable by its owner only (it holds
interaction tokens); a row that cannot be read back is moved to a quarantine table with
the reason, rather than stopping the bot; a database error (a full disk...) is raised as
:class:`StoreFailed`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from bot.jobs import BLOB_PREFIX, FINAL_STATES, DeliveryMode, JobParams, JobRecord, ResultSummary

T = TypeVar("T")

log = logging.getLogger("bot.store")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL,
    guild_id INTEGER,
    channel_id INTEGER NOT NULL,
    application_id INTEGER NOT NULL,
    interaction_token TEXT NOT NULL,
    token_expires_at REAL NOT NULL,
    upload_limit INTEGER NOT NULL,
    params TEXT NOT NULL,
    content_blob TEXT NOT NULL,
    style_ref TEXT NOT NULL,
    created_at REAL NOT NULL,
    state TEXT NOT NULL,
    status_message_id INTEGER,
    error TEXT,
    summary TEXT,
    delivery TEXT NOT NULL DEFAULT 'pending',
    delivery_mode TEXT,
    delivered_message_id INTEGER,
    parent_id TEXT,
    updated_at REAL NOT NULL,
    finished_at REAL,
    delivered_at REAL
);
CREATE INDEX IF NOT EXISTS jobs_open ON jobs (delivery, state);
CREATE TABLE IF NOT EXISTS user_styles (
    user_id INTEGER PRIMARY KEY,
    blob TEXT NOT NULL,
    filename TEXT NOT NULL,
    saved_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS quarantined_jobs (
    id TEXT,
    row TEXT NOT NULL,
    reason TEXT NOT NULL,
    quarantined_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS guild_settings (
    guild_id INTEGER PRIMARY KEY,
    allowed_channels TEXT NOT NULL DEFAULT '[]',
    max_quality TEXT
);
"""

# Columns added after the first release, with their definitions: opening an older database adds them.
_ADDED_COLUMNS: dict[str, dict[str, str]] = {
    "guild_settings": {
        "owner_only_buttons": "INTEGER NOT NULL DEFAULT 1",
        "spoilers": "INTEGER NOT NULL DEFAULT 0",
    },
}

# The table above has one column per JobRecord field, under the same name.
_COLUMNS = [f.name for f in fields(JobRecord)]


class StoreFailed(Exception):
    """A database operation failed (the disk is full, the file is damaged...)."""


class StoreUnusable(StoreFailed):
    """The database cannot be opened; ``str()`` says what to do, for the person running the bot."""


@dataclass
class GuildSettings:
    """What a server's admins changed: where /stylize may run and the highest quality allowed."""

    guild_id: int
    allowed_channels: list[int] = field(default_factory=list)
    max_quality: str | None = None
    owner_only_buttons: bool = True
    spoilers: bool = False


class JobStore:
    """SQLite-backed store; open with :meth:`open`, close with :meth:`close`."""

    def __init__(self, connection: sqlite3.Connection, executor: ThreadPoolExecutor) -> None:
        self._db = connection
        self._executor = executor

    @classmethod
    async def open(cls, path: str | Path) -> JobStore:
        """Open (creating if needed) the database at ``path``."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="job-store")

        def connect() -> sqlite3.Connection:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            # Owner-only from the first byte; SQLite gives its -wal and -shm files the same mode.
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
            os.chmod(path, 0o600)
            db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            try:
                db.row_factory = sqlite3.Row
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
                db.executescript(_SCHEMA)
                _add_missing_columns(db)
            except sqlite3.DatabaseError as exc:
                db.close()
                raise StoreUnusable(
                    f"the job database {str(path)!r} cannot be used ({exc}); move it aside (the bot then starts "
                    "with an empty one) or restore it from a backup"
                ) from None
            return db

        try:
            connection = await asyncio.get_running_loop().run_in_executor(executor, connect)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(connection, executor)

    async def close(self) -> None:
        await self._call(self._db.close)
        self._executor.shutdown(wait=True)

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        except sqlite3.Error as exc:
            raise StoreFailed(f"the job database failed: {exc}") from exc

    async def _execute(self, sql: str, *args: Any) -> int:
        def run() -> int:
            return self._db.execute(sql, args).rowcount

        return await self._call(run)

    async def _query(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        def run() -> list[sqlite3.Row]:
            return self._db.execute(sql, args).fetchall()

        return await self._call(run)

    # Jobs

    async def add(self, record: JobRecord) -> None:
        """Record a newly accepted job (before the user is told it is queued)."""
        record.updated_at = time.time()
        row = _to_row(record)
        placeholders = ", ".join("?" for _ in _COLUMNS)
        await self._execute(f"INSERT INTO jobs ({', '.join(_COLUMNS)}) VALUES ({placeholders})", *row)

    async def get(self, job_id: str) -> JobRecord | None:
        """The job ``job_id``; None if there is none (or its row had to be quarantined)."""
        records = await self._records("SELECT * FROM jobs WHERE id = ?", job_id)
        return records[0] if records else None

    async def _records(self, sql: str, *args: Any) -> list[JobRecord]:
        """The jobs ``sql`` selects; a row that cannot be read is quarantined and left out."""

        def run() -> list[JobRecord]:
            records = []
            for row in self._db.execute(sql, args).fetchall():
                try:
                    records.append(_from_row(row))
                except Exception as exc:
                    self._quarantine(row, exc)
            return records

        return await self._call(run)

    def _quarantine(self, row: sqlite3.Row, error: Exception) -> None:
        reason = f"{type(error).__name__}: {error}"
        log.error("job %r has a row that cannot be read (%s); moved it to the quarantined_jobs table", row["id"], reason)
        raw = json.dumps({key: row[key] for key in row.keys()}, default=repr)
        with self._db:
            self._db.execute(
                "INSERT INTO quarantined_jobs (id, row, reason, quarantined_at) VALUES (?, ?, ?, ?)",
                (row["id"], raw, reason, time.time()),
            )
            self._db.execute("DELETE FROM jobs WHERE rowid = (SELECT rowid FROM jobs WHERE id IS ? LIMIT 1)", (row["id"],))

    async def quarantined(self) -> list[tuple[str, str]]:
        """(job id, reason) of every quarantined row, oldest first."""
        rows = await self._query("SELECT id, reason FROM quarantined_jobs ORDER BY quarantined_at")
        return [(row["id"], row["reason"]) for row in rows]

    async def delete(self, job_id: str) -> None:
        """Forget a job the pool refused: it was never accepted."""
        await self._execute("DELETE FROM jobs WHERE id = ?", job_id)

    async def set_status_message(self, job_id: str, message_id: int) -> None:
        await self._execute(
            "UPDATE jobs SET status_message_id = ?, updated_at = ? WHERE id = ?", message_id, time.time(), job_id
        )

    async def set_state(self, job_id: str, state: str) -> None:
        """Move a job between "queued" and "running" (final states have their own methods)."""
        await self._execute(
            "UPDATE jobs SET state = ?, updated_at = ? WHERE id = ? AND state NOT IN ('finished', 'failed', 'cancelled')",
            state,
            time.time(),
            job_id,
        )

    async def finish(self, job_id: str, summary: ResultSummary) -> None:
        now = time.time()
        await self._execute(
            "UPDATE jobs SET state = 'finished', summary = ?, error = NULL, finished_at = ?, updated_at = ? WHERE id = ?",
            json.dumps(summary.to_json()),
            now,
            now,
            job_id,
        )

    async def fail(self, job_id: str, state: str, error: str) -> None:
        """End a job as "failed" or "cancelled" with the reason shown to its requester."""
        if state not in ("failed", "cancelled"):
            raise ValueError(f"not an unsuccessful final state: {state!r}")
        now = time.time()
        await self._execute(
            "UPDATE jobs SET state = ?, error = ?, finished_at = ?, updated_at = ? WHERE id = ?",
            state,
            error,
            now,
            now,
            job_id,
        )

    async def begin_delivery(self, job_id: str, mode: DeliveryMode) -> None:
        """Note that the final answer is about to be sent, and how, before sending it."""
        await self._execute(
            "UPDATE jobs SET delivery = 'sending', delivery_mode = ?, updated_at = ? WHERE id = ?",
            mode,
            time.time(),
            job_id,
        )

    async def mark_delivered(self, job_id: str, message_id: int | None) -> None:
        now = time.time()
        await self._execute(
            "UPDATE jobs SET delivery = 'delivered', delivered_message_id = ?, delivered_at = ?, updated_at = ? "
            "WHERE id = ?",
            message_id,
            now,
            now,
            job_id,
        )

    async def give_up_delivery(self, job_id: str, reason: str) -> None:
        """Stop trying to deliver (the channel is gone, the bot was removed...)."""
        now = time.time()
        await self._execute(
            "UPDATE jobs SET delivery = 'gave_up', error = COALESCE(error, ?), delivered_at = ?, updated_at = ? "
            "WHERE id = ?",
            reason,
            now,
            now,
            job_id,
        )

    async def open_jobs(self) -> list[JobRecord]:
        """Jobs that still owe their requester something: unfinished, or finished but not delivered."""
        return await self._records("SELECT * FROM jobs WHERE delivery IN ('pending', 'sending') ORDER BY created_at")

    async def user_files(self, user_id: int) -> tuple[set[str], list[str]]:
        """What ``user_id`` keeps on disk: the source image keys of their jobs and saved style, and their job ids."""
        rows = await self._query("SELECT id, content_blob, style_ref FROM jobs WHERE user_id = ?", user_id)
        keys = {row["blob"] for row in await self._query("SELECT blob FROM user_styles WHERE user_id = ?", user_id)}
        for row in rows:
            keys.add(row["content_blob"])
            if row["style_ref"].startswith(BLOB_PREFIX):
                keys.add(row["style_ref"][len(BLOB_PREFIX) :])
        return keys, [row["id"] for row in rows]

    async def count_by_state(self) -> dict[str, int]:
        rows = await self._query("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")
        return {row["state"]: row["n"] for row in rows}

    async def prune(self, older_than: float) -> list[str]:
        """Delete jobs that ended before ``older_than`` (epoch seconds); return their ids."""

        def run() -> list[str]:
            finals = tuple(FINAL_STATES)
            ids = [
                row["id"]
                for row in self._db.execute(
                    "SELECT id FROM jobs WHERE state IN (?, ?, ?) AND delivery IN ('delivered', 'gave_up') "
                    "AND finished_at < ?",
                    (*finals, older_than),
                )
            ]
            self._db.executemany("DELETE FROM jobs WHERE id = ?", [(job_id,) for job_id in ids])
            return ids

        return await self._call(run)

    async def referenced_blobs(self) -> set[str]:
        """Blob keys any remaining job, or any user's saved style, still needs (source images)."""
        rows = await self._query("SELECT content_blob, style_ref FROM jobs")
        keys = {row["blob"] for row in await self._query("SELECT blob FROM user_styles")}
        for row in rows:
            keys.add(row["content_blob"])
            if row["style_ref"].startswith(BLOB_PREFIX):
                keys.add(row["style_ref"][len(BLOB_PREFIX) :])
        return keys

    # Small facts about the bot itself (e.g. the hash of the last command sync)

    async def get_meta(self, key: str) -> str | None:
        rows = await self._query("SELECT value FROM meta WHERE key = ?", key)
        return rows[0]["value"] if rows else None

    async def set_meta(self, key: str, value: str) -> None:
        await self._execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            key,
            value,
        )

    # Per-server settings

    async def guild_settings(self, guild_id: int) -> GuildSettings:
        rows = await self._query("SELECT * FROM guild_settings WHERE guild_id = ?", guild_id)
        if not rows:
            return GuildSettings(guild_id)
        row = rows[0]
        return GuildSettings(
            guild_id,
            json.loads(row["allowed_channels"]),
            row["max_quality"],
            owner_only_buttons=bool(row["owner_only_buttons"]),
            spoilers=bool(row["spoilers"]),
        )

    async def save_guild_settings(self, settings: GuildSettings) -> None:
        await self._execute(
            "INSERT INTO guild_settings (guild_id, allowed_channels, max_quality, owner_only_buttons, spoilers) "
            "VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(guild_id) DO UPDATE SET allowed_channels = excluded.allowed_channels, "
            "max_quality = excluded.max_quality, owner_only_buttons = excluded.owner_only_buttons, "
            "spoilers = excluded.spoilers",
            settings.guild_id,
            json.dumps(settings.allowed_channels),
            settings.max_quality,
            int(settings.owner_only_buttons),
            int(settings.spoilers),
        )

    # Per-user saved styles ("Use as style")

    async def user_style(self, user_id: int) -> tuple[str, str] | None:
        """The blob key and file name of the style ``user_id`` saved, if any."""
        rows = await self._query("SELECT blob, filename FROM user_styles WHERE user_id = ?", user_id)
        return (rows[0]["blob"], rows[0]["filename"]) if rows else None

    async def save_user_style(self, user_id: int, blob: str, filename: str) -> None:
        await self._execute(
            "INSERT INTO user_styles (user_id, blob, filename, saved_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(user_id) DO UPDATE SET blob = excluded.blob, filename = excluded.filename, "
            "saved_at = excluded.saved_at",
            user_id,
            blob,
            filename,
            time.time(),
        )

    async def jobs_of(self, user_id: int, guild_id: int | None, limit: int = 25) -> list[JobRecord]:
        """``user_id``'s jobs in ``guild_id``, newest first."""
        return await self._records(
            "SELECT * FROM jobs WHERE user_id = ? AND guild_id IS ? ORDER BY created_at DESC LIMIT ?",
            user_id,
            guild_id,
            limit,
        )


def _add_missing_columns(db: sqlite3.Connection) -> None:
    """Bring a database made by an older version up to date (columns are only ever added)."""
    for table, columns in _ADDED_COLUMNS.items():
        present = {row["name"] for row in db.execute(f"PRAGMA table_info({table})")}
        for name, definition in columns.items():
            if name not in present:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {definition}")


def _to_row(record: JobRecord) -> tuple[Any, ...]:
    values = {name: getattr(record, name) for name in _COLUMNS}
    values["params"] = json.dumps(asdict(record.params))
    values["summary"] = json.dumps(record.summary.to_json()) if record.summary else None
    return tuple(values[name] for name in _COLUMNS)


def _from_row(row: sqlite3.Row) -> JobRecord:
    values = {name: row[name] for name in _COLUMNS}
    values["params"] = JobParams(**json.loads(values["params"]))
    values["summary"] = ResultSummary.from_json(json.loads(values["summary"])) if values["summary"] else None
    return JobRecord(**values)
