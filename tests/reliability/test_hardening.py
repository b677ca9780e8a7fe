"""Hostile files and faults against the real bot on the fake Discord: bounded work, clear answers, no stuck job.

One bot serves the module: 20 MiB uploads and 16 megapixels allowed (the defaults), two jobs
per user, a 60 s cooldown, and an orphan check every second.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import time
import uuid

import pytest
import pytest_asyncio

from tests.bot.harness import (
    DONE_TITLE,
    BotProcess,
    accepted_status,
    finals_for,
    job_prefix,
    refusal,
    small_image,
    stylize,
    title,
    wait_title,
)
from tests.fake_discord import CdnFault
from tests.hostile_files import (
    apng_huge_frame_count,
    bmp_rle8,
    gif_many_frames,
    png_16mp,
    png_many_chunks,
    webp_huge_canvas,
)
from tests.reliability.support import FAILED_TITLE, running_bot

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]

OVERRIDES = {
    "downloads": {"max_bytes": 20 * 1024 * 1024, "max_pixels": 16_000_000, "timeout_s": 20.0},
    "limits": {"max_jobs_per_user": 2, "cooldown_s": 60.0, "queue_size": 16},
    "storage": {"orphan_check_s": 1.0},
}


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world(tmp_path_factory, images_dir):
    async with running_bot(tmp_path_factory.mktemp("hardening"), images_dir, OVERRIDES) as world:
        yield world


async def test_hostile_files_through_the_bot_get_a_clear_answer_each(world):
    fake = world.fake
    uploads = {
        "gif": (fake.add_attachment(gif_many_frames(), "frames.gif", "image/gif"), DONE_TITLE),
        "apng": (fake.add_attachment(apng_huge_frame_count(), "anim.png", "image/png"), DONE_TITLE),
        "la": (fake.add_attachment(png_16mp("LA"), "big.png", "image/png"), DONE_TITLE),
        "chunks": (fake.add_attachment(png_many_chunks(), "chunks.png", "image/png"), "more than 50000 chunks"),
        "webp": (fake.add_attachment(webp_huge_canvas(), "canvas.webp", "image/webp"), "268.4 megapixels"),
        "bmp": (fake.add_attachment(bmp_rle8(), "old.bmp", "image/bmp"), "RLE8 compression are not supported"),
    }
    handles = await asyncio.gather(*(
        stylize(fake, world.user(), content=upload, preset="starry_night", quality="fast")
        for upload, _ in uploads.values()
    ))
    for (name, (upload, expected)), interaction in zip(uploads.items(), handles, strict=True):
        if expected == DONE_TITLE:
            status = await accepted_status(interaction, timeout=60)
            await wait_title(fake, status, DONE_TITLE, timeout=120)
            assert finals_for(fake, job_prefix(status)) == [status], name
        else:
            message = await refusal(interaction, timeout=60)
            assert expected in message and f"(`{upload['filename']}`)" in message, f"{name}: {message}"
    # Stored uploads are re-encoded and shrunk: nothing near the uploads' megabytes is kept.
    sources = list((world.config_path.parent / "data" / "sources").iterdir())
    assert sources and max(path.stat().st_size for path in sources) < 200_000
    assert not list((world.config_path.parent / "data").rglob("*.tmp"))


async def test_a_user_s_requests_count_against_their_limit_from_the_first_gate(world, images_dir):
    fake = world.fake
    user = world.user()
    picture, _, _ = small_image(images_dir / "tubingen.jpg", 48, "PNG")
    # Each download takes about 7 s (3.5 kB at 256 bytes per half second, under the 20 s download
    # timeout), so all three requests are in flight together even on a loaded machine; at 1024
    # bytes per half second the first was sometimes accepted before the third was sent.
    slow = [
        fake.add_attachment(picture, f"slow{index}.png", "image/png", fault=CdnFault.trickle(256, 0.5))
        for index in range(3)
    ]
    first = await stylize(fake, user, content=slow[0], preset="starry_night", quality="fast")
    second = await stylize(fake, user, content=slow[1], preset="starry_night", quality="fast")
    third = await stylize(fake, user, content=slow[2], preset="starry_night", quality="fast")
    message = await refusal(third)
    assert "You already have 2 jobs" in message
    assert fake.cdn.hits(slow[2]) == 0, "a request over the limit must not download anything"
    # The first of the two to finish downloading is accepted; the other then meets its cooldown.
    answers = [(await interaction.wait_original(timeout=60)).content for interaction in (first, second)]
    assert sorted("is queued" in answer for answer in answers) == [False, True], answers
    assert any("Slow down a little" in answer for answer in answers), answers
    accepted = first if "is queued" in answers[0] else second
    await wait_title(fake, await accepted_status(accepted), DONE_TITLE, timeout=120)


async def test_a_request_refused_after_its_download_costs_a_cooldown(world):
    fake = world.fake
    user = world.user()
    broken = fake.add_attachment(png_many_chunks(60_000), "broken.png", "image/png")
    message = await refusal(await stylize(fake, user, content=broken, preset="starry_night", quality="fast"))
    assert "chunks" in message
    again = await stylize(fake, user, content=world.images.content, preset="starry_night", quality="fast")
    assert "Slow down a little" in await refusal(again)


async def test_a_job_whose_result_cannot_be_stored_fails_with_a_message_instead_of_staying_running(world):
    fake = world.fake
    results = world.config_path.parent / "data" / "results"
    moved = results.with_name("results-away")
    results.rename(moved)
    # A file where the folder was: every write of a result fails, as on a broken disk.
    results.write_bytes(b"")
    try:
        interaction = await stylize(fake, world.user(), content=world.images.content, preset="starry_night")
        status = await accepted_status(interaction, timeout=60)
        await wait_title(fake, status, FAILED_TITLE, timeout=120)
        assert "storing its result failed" in status.text
        assert status.buttons == [], "no Cancel button is left on a job that ended"
    finally:
        results.unlink()
        moved.rename(results)
    database = world.config_path.parent / "nst.sqlite3"
    with sqlite3.connect(database) as db:
        state = db.execute("SELECT state FROM jobs WHERE id LIKE ?", (f"{job_prefix(status)}%",)).fetchone()
    assert state == ("failed",)


async def test_an_open_job_nobody_follows_is_taken_up_by_the_orphan_check(world):
    fake = world.fake
    interaction = await stylize(fake, world.user(), content=world.images.content, preset="starry_night")
    status = await accepted_status(interaction, timeout=60)
    await wait_title(fake, status, DONE_TITLE, timeout=120)
    database = world.config_path.parent / "nst.sqlite3"
    orphan = uuid.uuid4().hex
    # A copy of that job, left "running" long ago by a process that no longer follows it.
    with sqlite3.connect(database) as db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(jobs)")]
        row = dict(zip(columns, db.execute("SELECT * FROM jobs WHERE id LIKE ?", (f"{job_prefix(status)}%",)).fetchone(), strict=True))
        row.update(id=orphan, state="running", delivery="pending", summary=None, finished_at=None,
                   delivered_at=None, delivered_message_id=None, delivery_mode=None, updated_at=time.time() - 3600)
        db.execute(f"INSERT INTO jobs ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})", tuple(row.values()))

    def delivered() -> tuple | None:
        with sqlite3.connect(database) as db:
            found = db.execute("SELECT state, delivery FROM jobs WHERE id = ?", (orphan,)).fetchone()
        return found if found == ("finished", "delivered") else None

    async with asyncio.timeout(120):
        while not delivered():
            await asyncio.sleep(0.5)
    assert "was left unfollowed; taking it up again" in world.bot.log()


async def test_a_second_bot_on_the_same_data_folder_exits_with_a_clear_message(world):
    second = await BotProcess.start(world.config_path, world.fake, log_name="second-bot.log")
    try:
        async with asyncio.timeout(120):
            code = await second.process.wait()
    finally:
        await second.kill()
    assert code == 1
    assert "is already using the data folder" in second.log()
    interaction = await stylize(world.fake, world.user(), content=world.images.content, preset="starry_night")
    status = await accepted_status(interaction, timeout=60)
    await wait_title(world.fake, status, DONE_TITLE, timeout=120)
    assert title(status) == DONE_TITLE
