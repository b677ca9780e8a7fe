"""The bot end to end, for what a requester sees of a job: throttled progress with its preview, the queue
position kept up to date at a bounded rate, the buttons under a result, and a job too large for any worker.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time

import pytest
import pytest_asyncio

from tests.bot.harness import (
    DONE_TITLE,
    accepted_status,
    refusal,
    stylize,
    title,
    wait_title,
)
from tests.reliability.support import RUNNING_TITLE, BotWorld, running_bot

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]

EDIT_INTERVAL_S = 1.5
QUEUE_EDIT_INTERVAL_S = 10.0
PREVIEW_SIZE = 24
# The bot decides when to edit; the fake sees the request a little later, by a varying delay.
CLOCK_SLACK = 0.8
MAX_SIZE = 100_000
CANCELLED_TITLE = "🛑 Cancelled"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world(tmp_path_factory, images_dir):
    overrides = {
        "pool": {"progress_every": 1, "preview_interval_s": 0.2},
        "progress": {
            "edit_interval_s": EDIT_INTERVAL_S,
            "queue_edit_interval_s": QUEUE_EDIT_INTERVAL_S,
            "preview_size": PREVIEW_SIZE,
        },
        "limits": {"max_size": MAX_SIZE, "queue_size": 8},
        # Several seconds of work: long enough for a few progress edits.
        "quality.balanced": {"size": 40, "steps": 150},
    }
    async with running_bot(tmp_path_factory.mktemp("progress"), images_dir, overrides) as world:
        yield world


def running_versions(message) -> list:
    return [v for v in message.history if v.embeds and v.embeds[0].get("title") == RUNNING_TITLE]


async def test_progress_edits_are_spaced_by_edit_interval_and_carry_a_preview(world):
    fake = world.fake
    status = await accepted_status(
        await stylize(fake, world.user(), content=world.images.content, preset="the_scream", quality="balanced")
    )
    await wait_title(fake, status, DONE_TITLE, timeout=180)
    running = running_versions(status)
    assert len(running) >= 3, f"a job of several seconds must show its progress more than once: {len(running)}"
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(running)]
    # Progress arrives every 0.2 s; only the throttle keeps the edits this far apart.
    assert min(gaps) >= EDIT_INTERVAL_S * CLOCK_SLACK, f"edits {gaps} closer than {EDIT_INTERVAL_S} s"
    previews = [v.attachments[0].image() for v in running[1:] if v.attachments]
    assert previews, "the progress edits must carry the preview image"
    assert all(max(preview.size) == PREVIEW_SIZE for preview in previews), [p.size for p in previews]


async def test_queue_position_edits_come_at_most_every_queue_edit_interval(world):
    fake = world.fake
    running = await accepted_status(
        await stylize(fake, world.user(), content=world.images.content, preset="the_scream", quality="high")
    )
    await fake.wait_for(lambda: title(running) == RUNNING_TITLE, 60, "the blocking job to run")
    ahead = [
        await accepted_status(
            await stylize(fake, world.user(), content=world.images.content, preset="shipwreck", quality="fast")
        )
        for _ in range(3)
    ]
    waiter = await accepted_status(
        await stylize(fake, world.user(), content=world.images.content, preset="starry_night", quality="fast")
    )
    posted = waiter.history[0].at
    assert "Position **4** in the queue" in waiter.text, waiter.text
    # Past the interval since it was posted, its first position change is shown; the next ones, within the
    # interval of that edit, are not.
    await asyncio.sleep(posted + QUEUE_EDIT_INTERVAL_S + 0.2 - time.monotonic())
    presses = [await fake.press_button(m, label="Cancel", user=m.interaction.user) for m in ahead]
    for press, message in zip(presses, ahead, strict=True):
        await press.wait_acknowledged()
        await wait_title(fake, message, CANCELLED_TITLE)
    try:
        await fake.wait_for(lambda: len(waiter.history) > 1, 30, "a position change after the interval to be shown")
        edits = waiter.history[1:]
        assert edits[-1].at - edits[0].at < QUEUE_EDIT_INTERVAL_S, "the cancels must fall within one interval"
        assert len(edits) == 1, f"three position changes in a row must make one edit, not {len(edits)}"
        assert "Position **3** in the queue" in edits[0].embeds[0]["description"], edits[0].embeds
    finally:
        for message in (waiter, running):
            press = await fake.press_button(message, label="Cancel", user=message.interaction.user)
            await press.wait_acknowledged()
            await wait_title(fake, message, CANCELLED_TITLE)


async def test_less_style_preserve_colours_and_rerun_start_the_job_again_changed(world):
    fake = world.fake
    user = world.user()
    original = await accepted_status(
        await stylize(fake, user, content=world.images.content, style=world.images.style, quality="fast", seed=5)
    )
    await wait_title(fake, original, DONE_TITLE)
    assert "strength ×1 · seed 5" in original.text

    async def press(label: str):
        started = await accepted_status(await fake.press_button(original, label=label, user=user))
        await wait_title(fake, started, DONE_TITLE)
        assert started.id != original.id and started.attachments
        return started

    less = await press("Less style")
    assert "strength ×0.5" in less.text and "seed 5" in less.text, less.text
    colours = await press("Preserve colours")
    assert "colours preserved" in colours.text and "strength ×1" in colours.text, colours.text
    assert colours.button(label="Original colours"), "the result of a colour-preserved job offers the way back"
    rerun = await press("Re-run (new seed)")
    # "seed 5" would also match a new seed such as 562089499: compare the number itself.
    assert "strength ×1" in rerun.text and re.search(r"seed (\d+)", rerun.text)[1] != "5", rerun.text
    # From the content image, the seed changes nothing in the picture; the strength and the colours do.
    first = original.attachments[0].image().tobytes()
    assert less.attachments[0].image().tobytes() != first and colours.attachments[0].image().tobytes() != first


async def test_a_job_too_large_for_any_worker_is_refused_with_the_size_that_fits(world):
    fake = world.fake
    interaction = await stylize(fake, world.user(), content=world.images.content, preset="starry_night",
                                size=MAX_SIZE)
    message = await refusal(interaction)
    assert f"At {MAX_SIZE} px this job needs about" in message, message
    assert "the largest size that fits is" in message and message.endswith("px."), message
