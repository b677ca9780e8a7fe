"""The durable job store and the blob files it points at."""

from __future__ import annotations

import os
import time

import pytest

from bot.blobs import BlobStore
from bot.jobs import JobParams, JobRecord, ResultSummary, new_job_id
from bot.store import GuildSettings, JobStore
from nst_engine.request import LossTerms


@pytest.fixture
async def store(tmp_path):
    store = await JobStore.open(tmp_path / "db" / "jobs.sqlite3")
    yield store
    await store.close()


def _record(content_blob: str = "c" * 64, style_ref: str = "preset:starry_night", **changes) -> JobRecord:
    values = {
        "id": new_job_id(),
        "user_id": 11,
        "guild_id": 22,
        "channel_id": 33,
        "application_id": 44,
        "interaction_token": "tok",
        "token_expires_at": time.time() + 900,
        "upload_limit": 8_000_000,
        "params": JobParams(quality="fast", size=48, steps=3, style_strength=2.0, preserve_colors=True, seed=5),
        "content_blob": content_blob,
        "style_ref": style_ref,
        "created_at": time.time(),
    }
    values.update(changes)
    return JobRecord(**values)


def _summary() -> ResultSummary:
    terms = LossTerms(content=1.0, style=2.0, tv=0.5, total=3.5)
    return ResultSummary(terms, terms, 3, 1.5, "cpu", 5, "caffe", 48, 32)


async def test_a_job_round_trips_through_every_state(store):
    record = _record()
    await store.add(record)
    loaded = await store.get(record.id)
    assert loaded.params == record.params and loaded.state == "queued" and loaded.delivery == "pending"

    await store.set_status_message(record.id, 999)
    await store.set_state(record.id, "running")
    await store.finish(record.id, _summary())
    loaded = await store.get(record.id)
    assert (loaded.state, loaded.status_message_id, loaded.summary) == ("finished", 999, _summary())
    assert [job.id for job in await store.open_jobs()] == [record.id]

    await store.set_state(record.id, "running")
    assert (await store.get(record.id)).state == "finished", "a final state is never undone"

    await store.begin_delivery(record.id, "channel")
    assert (await store.get(record.id)).delivery == "sending"
    assert [job.id for job in await store.open_jobs()] == [record.id]
    await store.mark_delivered(record.id, 1234)
    loaded = await store.get(record.id)
    assert (loaded.delivery, loaded.delivery_mode, loaded.delivered_message_id) == ("delivered", "channel", 1234)
    assert await store.open_jobs() == []


async def test_failures_cancellations_and_gave_up(store):
    failed, cancelled = _record(), _record()
    await store.add(failed)
    await store.add(cancelled)
    await store.fail(failed.id, "failed", "The worker crashed.")
    await store.fail(cancelled.id, "cancelled", "Cancelled by its requester.")
    assert (await store.get(failed.id)).error == "The worker crashed."
    assert await store.count_by_state() == {"failed": 1, "cancelled": 1}
    with pytest.raises(ValueError):
        await store.fail(failed.id, "finished", "no")
    await store.give_up_delivery(failed.id, "channel gone")
    assert [job.id for job in await store.open_jobs()] == [cancelled.id]
    await store.delete(cancelled.id)
    assert await store.get(cancelled.id) is None


async def test_jobs_survive_reopening(tmp_path):
    path = tmp_path / "jobs.sqlite3"
    first = await JobStore.open(path)
    record = _record()
    await first.add(record)
    await first.close()
    second = await JobStore.open(path)
    assert (await second.get(record.id)).interaction_token == "tok"
    await second.close()


async def test_prune_removes_old_ended_jobs_and_keeps_what_is_referenced(store, tmp_path):
    blobs = BlobStore(tmp_path / "data")
    old_key, new_key, orphan_key = (blobs.put_source(data) for data in (b"old", b"new", b"orphan"))
    old = _record(content_blob=old_key)
    recent = _record(content_blob=new_key, style_ref=f"blob:{old_key}")
    unfinished = _record(content_blob=new_key)
    for record in (old, recent, unfinished):
        await store.add(record)
    for record in (old, recent):
        await store.finish(record.id, _summary())
        await store.mark_delivered(record.id, 1)
    cutoff = time.time() + 1
    await store._execute("UPDATE jobs SET finished_at = ? WHERE id = ?", cutoff - 100, old.id)
    await store._execute("UPDATE jobs SET finished_at = ? WHERE id = ?", cutoff + 100, recent.id)

    assert await store.prune(cutoff) == [old.id]
    keep = await store.referenced_blobs()
    assert keep == {old_key, new_key}
    old_time = time.time() - 7200
    for key in (old_key, new_key, orphan_key):
        os.utime(blobs._sources / key, (old_time, old_time))
    assert blobs.delete_sources_except(keep, min_age_s=3600) == 1
    assert blobs.source(old_key) == b"old"
    with pytest.raises(FileNotFoundError):
        blobs.source(orphan_key)


def test_fresh_sources_are_never_pruned(tmp_path):
    blobs = BlobStore(tmp_path)
    key = blobs.put_source(b"just uploaded")
    assert blobs.delete_sources_except(set(), min_age_s=3600) == 0
    assert blobs.source(key) == b"just uploaded"


def test_a_source_stored_again_counts_as_fresh(tmp_path):
    blobs = BlobStore(tmp_path)
    key = blobs.put_source(b"uploaded last week, and again now")
    old_time = time.time() - 7200
    os.utime(blobs._sources / key, (old_time, old_time))
    assert blobs.put_source(b"uploaded last week, and again now") == key
    assert blobs.delete_sources_except(set(), min_age_s=3600) == 0
    assert blobs.source(key) == b"uploaded last week, and again now"


def test_results_are_stored_and_deleted(tmp_path):
    blobs = BlobStore(tmp_path)
    assert blobs.result("x" * 32) is None
    blobs.put_result("x" * 32, b"png")
    assert blobs.result("x" * 32) == b"png"
    blobs.delete_results(["x" * 32])
    assert blobs.result("x" * 32) is None
    assert not list(tmp_path.rglob("*.tmp"))


async def test_guild_settings(store):
    assert await store.guild_settings(5) == GuildSettings(5)
    await store.save_guild_settings(GuildSettings(5, [10, 11], "fast"))
    await store.save_guild_settings(GuildSettings(6, [], None))
    assert await store.guild_settings(5) == GuildSettings(5, [10, 11], "fast")
    await store.save_guild_settings(GuildSettings(5, [], "balanced"))
    assert await store.guild_settings(5) == GuildSettings(5, [], "balanced")


async def test_a_database_from_before_the_server_switches_gains_them_with_their_defaults(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as old:
        old.execute(
            "CREATE TABLE guild_settings (guild_id INTEGER PRIMARY KEY, allowed_channels TEXT NOT NULL DEFAULT '[]', "
            "max_quality TEXT)"
        )
        old.execute("INSERT INTO guild_settings VALUES (7, '[1]', 'fast')")
    store = await JobStore.open(path)
    try:
        settings = await store.guild_settings(7)
        assert (settings.allowed_channels, settings.max_quality) == ([1], "fast")
        assert (settings.owner_only_buttons, settings.spoilers) == (True, False)
        settings.spoilers, settings.owner_only_buttons = True, False
        await store.save_guild_settings(settings)
        again = await store.guild_settings(7)
        assert (again.owner_only_buttons, again.spoilers) == (False, True)
    finally:
        await store.close()


async def test_a_saved_style_keeps_its_image_from_the_sweep(store):
    assert await store.user_style(5) is None
    await store.save_user_style(5, "s" * 64, "mine.png")
    await store.save_user_style(5, "t" * 64, "better.png")
    assert await store.user_style(5) == ("t" * 64, "better.png")
    assert "t" * 64 in await store.referenced_blobs()
    assert "s" * 64 not in await store.referenced_blobs()
