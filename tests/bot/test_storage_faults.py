"""The bot's storage under faults (a full disk, a damaged database, a malformed row, a second bot on the folder), and a dying decoder."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import pytest

from bot.blobs import BlobStore
from bot.config import parse_config
from bot.datalock import DataFolderBusy, DataFolderLock
from bot.intake import Intake, Refusal
from bot.jobs import BLOB_PREFIX, JobParams, JobRecord
from bot.store import JobStore, StoreFailed, StoreUnusable
from bot.validation import AttachmentInfo
from tests.fake_discord import FakeDiscord
from tests.hostile_files import png_16mp


def record(job_id: str, user_id: int = 1, content: str = "c" * 64, style: str = "preset:starry_night") -> JobRecord:
    return JobRecord(
        id=job_id,
        user_id=user_id,
        guild_id=5,
        channel_id=6,
        application_id=7,
        interaction_token="token",
        token_expires_at=time.time() + 900,
        upload_limit=8_000_000,
        params=JobParams(quality="fast", size=32, steps=2),
        content_blob=content,
        style_ref=style,
        created_at=time.time(),
    )


def full_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every fsync fail as on a full disk (the data reached the page cache, not the disk)."""

    def fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("bot.blobs.os.fsync", fsync)


# --- blobs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("write", ["source", "result"])
def test_a_write_on_a_full_disk_raises_and_leaves_no_temporary_file(tmp_path, monkeypatch, write):
    blobs = BlobStore(tmp_path)
    full_disk(monkeypatch)
    with pytest.raises(OSError) as failed:
        blobs.put_source(b"image bytes") if write == "source" else blobs.put_result("job", b"png bytes")
    assert failed.value.errno == errno.ENOSPC
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_the_sweep_removes_temporary_files_a_crash_left_behind(tmp_path):
    blobs = BlobStore(tmp_path)
    stale = [tmp_path / "sources" / "abc.1234.tmp", tmp_path / "results" / "job.png.5678.tmp"]
    fresh = tmp_path / "sources" / "def.9999.tmp"
    for path in [*stale, fresh]:
        path.write_bytes(b"half a file")
    two_hours_ago = time.time() - 7200
    for path in stale:
        os.utime(path, (two_hours_ago, two_hours_ago))
    assert blobs.delete_stale_temporaries() == 2
    assert not any(path.exists() for path in stale)
    assert fresh.exists(), "a write may still be in progress"


# --- the database ---------------------------------------------------------------------------------


async def test_the_database_and_its_journal_are_readable_by_their_owner_only(tmp_path):
    path = tmp_path / "nst.sqlite3"
    store = await JobStore.open(path)
    try:
        await store.add(record("a" * 32))
        for name in ("nst.sqlite3", "nst.sqlite3-wal", "nst.sqlite3-shm"):
            assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
    finally:
        await store.close()


async def test_an_existing_world_readable_database_is_made_private(tmp_path):
    path = tmp_path / "nst.sqlite3"
    path.touch(mode=0o644)
    os.chmod(path, 0o644)
    store = await JobStore.open(path)
    await store.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_a_full_database_raises_store_failed(tmp_path):
    path = tmp_path / "nst.sqlite3"
    store = await JobStore.open(path)
    try:
        # The page limit SQLite enforces is its own "disk full": SQLITE_FULL, as on a full disk.
        rows = await store._query("PRAGMA page_count")
        await store._execute(f"PRAGMA max_page_count = {rows[0][0]}")
        with pytest.raises(StoreFailed, match="full"):
            for index in range(200):
                await store.add(record(f"{index:032d}"))
    finally:
        await store.close()


async def test_a_damaged_database_file_stops_the_start_with_what_to_do(tmp_path):
    path = tmp_path / "nst.sqlite3"
    path.write_bytes(b"this is not a database, just bytes where one should be" * 100)
    with pytest.raises(StoreUnusable, match=r"cannot be used .*move it aside"):
        await JobStore.open(path)


async def test_a_row_that_cannot_be_read_is_quarantined_and_the_rest_are_served(tmp_path):
    path = tmp_path / "nst.sqlite3"
    store = await JobStore.open(path)
    try:
        await store.add(record("good".ljust(32, "0")))
        await store.add(record("bad".ljust(32, "0")))
        await store._execute("UPDATE jobs SET params = ? WHERE id = ?", "{not json", "bad".ljust(32, "0"))
        assert [r.id for r in await store.open_jobs()] == ["good".ljust(32, "0")]
        quarantined = await store.quarantined()
        assert [job_id for job_id, _ in quarantined] == ["bad".ljust(32, "0")]
        assert "JSONDecodeError" in quarantined[0][1]
        assert await store.get("bad".ljust(32, "0")) is None
        raw = await store._query("SELECT row FROM quarantined_jobs")
        assert json.loads(raw[0][0])["params"] == "{not json", "the row is kept as it was, for a person to look at"
    finally:
        await store.close()


# --- the data folder lock -------------------------------------------------------------------------


def test_a_second_process_cannot_take_the_data_folder(tmp_path):
    lock = DataFolderLock.acquire(tmp_path)
    try:
        script = (
            "import sys\n"
            "from bot.datalock import DataFolderLock, DataFolderBusy\n"
            "try:\n"
            f"    DataFolderLock.acquire({str(tmp_path)!r})\n"
            "except DataFolderBusy as exc:\n"
            "    print(exc); sys.exit(3)\n"
        )
        second = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
        assert second.returncode == 3, second.stderr
        assert f"another bot (process {os.getpid()}) is already using the data folder" in second.stdout
    finally:
        lock.release()
    DataFolderLock.acquire(tmp_path).release()


def test_the_lock_is_exclusive_even_within_one_process(tmp_path):
    lock = DataFolderLock.acquire(tmp_path)
    try:
        with pytest.raises(DataFolderBusy):
            DataFolderLock.acquire(tmp_path)
    finally:
        lock.release()


# --- the storage gate -----------------------------------------------------------------------------


async def intake_on(tmp_path: Path, storage: dict) -> tuple[Intake, JobStore, BlobStore]:
    config = parse_config({"storage": {"data_dir": str(tmp_path), "database": str(tmp_path / "db"), **storage}})
    store = await JobStore.open(config.storage.database)
    blobs = BlobStore(config.storage.data_dir)
    bot = SimpleNamespace(config=config, store=store, blobs=blobs)
    return Intake(bot), store, blobs  # type: ignore[arg-type]


async def test_new_jobs_are_refused_while_free_disk_is_under_the_floor(tmp_path):
    free = BlobStore(tmp_path).free_bytes()
    intake, store, _ = await intake_on(tmp_path, {"min_free_bytes": free + 2**40})
    try:
        with pytest.raises(Refusal, match="storage is nearly full") as refused:
            await intake._check_storage(1)
        assert refused.value.reason == "disk_full"
    finally:
        intake.close()
        await store.close()
    intake, store, _ = await intake_on(tmp_path, {"min_free_bytes": 1})
    try:
        await intake._check_storage(1)
    finally:
        intake.close()
        await store.close()


async def test_a_user_over_their_storage_quota_is_refused_and_others_are_not(tmp_path):
    intake, store, blobs = await intake_on(tmp_path, {"max_bytes_per_user": 10_000, "min_free_bytes": 0})
    try:
        content = blobs.put_source(b"c" * 4_000)
        style = blobs.put_source(b"s" * 4_000)
        await store.add(record("1".ljust(32, "0"), user_id=1, content=content, style=f"{BLOB_PREFIX}{style}"))
        await intake._check_storage(1)
        blobs.put_result("1".ljust(32, "0"), b"r" * 3_000)
        with pytest.raises(Refusal, match=r"You have 10\.7 KiB of images stored with me, the most one person may keep \(9\.8 KiB\)") as refused:
            await intake._check_storage(1)
        assert refused.value.reason == "quota"
        await intake._check_storage(2)
    finally:
        intake.close()
        await store.close()


# --- the decode processes -------------------------------------------------------------------------


async def test_a_decoder_that_dies_refuses_that_upload_and_fresh_decoders_take_the_next(tmp_path):
    config = parse_config(
        {
            "storage": {"data_dir": str(tmp_path), "database": str(tmp_path / "db")},
            "downloads": {"allowed_hosts": ["127.0.0.1"], "allowed_schemes": ["http"], "allow_explicit_port": True},
        }
    )
    big = png_16mp("LA")
    async with FakeDiscord() as fake, aiohttp.ClientSession() as session:
        bot = SimpleNamespace(config=config, blobs=BlobStore(tmp_path), http_session=session)
        intake = Intake(bot)  # type: ignore[arg-type]
        try:
            payload = fake.add_attachment(big, "big.png", "image/png")
            upload = AttachmentInfo("big.png", payload["url"], payload["size"], "image/png", None, None)
            taking = asyncio.create_task(intake._take_in("content", upload))
            # Kill the decode processes as soon as they exist, as the kernel's OOM killer or a crash would.
            async with asyncio.timeout(60):
                while not intake._decoder._processes:
                    await asyncio.sleep(0.01)
            for pid in list(intake._decoder._processes):
                os.kill(pid, signal.SIGKILL)
            with pytest.raises(Refusal, match=r"The content image \(`big\.png`\) could not be read: it made the image"):
                await taking
            key = await intake._take_in("content", upload)
            assert BlobStore(tmp_path).has_source(key)
        finally:
            intake.close()
