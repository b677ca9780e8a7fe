"""Load and caps through the fake Discord, against the real bot.

A small run of ``benchmarks/load_test.py`` (40 interactions from 10 users, in bursts) must
keep its invariants: one final answer each, none lost, every interaction deferred before
anything else, caps held. (How fast the deferral comes depends on the machine's load here;
test_ack_deadline.py holds the bot to Discord's 3 s, and the load script itself enforces it.) Then bursts aimed at each cap, with jobs
long enough that nothing finishes while the test counts: a user's simultaneous requests
get no more than the per-user limit and no way around the cooldown, and many users at once
fill the queue exactly to its cap.
"""

from __future__ import annotations

import asyncio

import pytest
import pytest_asyncio

from benchmarks.load_test import LoadSettings, run_load
from tests.bot.harness import FINAL_TITLES, accepted_status, finals_for, job_prefix, stylize, title, wait_title
from tests.fake_discord import FakeInteraction, FakeMessage
from tests.reliability.support import BotWorld, running_bot

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]

CANCELLED_TITLE = "🛑 Cancelled"
JOBS_PER_USER = 2
QUEUE_SIZE = 3


async def test_a_small_load_gets_exactly_one_answer_each_within_the_caps(tmp_path, images_dir):
    settings = LoadSettings(interactions=40, users=10, burst=10, pause_s=1.0, timeout_s=240.0, ack_deadline_s=None)
    report = await run_load(settings, tmp_path, images_dir)
    assert report.failures() == [], report.render()
    assert len(report.outcomes) == settings.interactions
    assert report.kinds["image"] > 0, report.render()
    # failures() holds that each broken upload is refused as broken unless a limit refused it first;
    # which limits fire depends on timing, so the exact count of "bad_image" refusals is not fixed.
    assert sum(outcome.broken for outcome in report.outcomes) == settings.interactions // settings.bad_every


async def burst(world: BotWorld, users: list, quality: str = "high") -> list[FakeInteraction]:
    """Every user's /stylize sent at the same moment; returns them once each has its first answer."""
    interactions = await asyncio.gather(*(
        stylize(world.fake, user, content=world.images.content, preset="the_scream", quality=quality)
        for user in users
    ))
    for interaction in interactions:
        await interaction.wait_original(timeout=30)
    return list(interactions)


def split(interactions: list[FakeInteraction]) -> tuple[list[FakeInteraction], list[str]]:
    """(accepted interactions, refusal texts)."""
    accepted = [i for i in interactions if "is queued" in i.original.content]
    refusals = [i.original.content for i in interactions if i.original.content.startswith("⚠️")]
    assert len(accepted) + len(refusals) == len(interactions)
    return accepted, refusals


async def cancel_all(world: BotWorld, accepted: list[FakeInteraction]) -> list[FakeMessage]:
    """Cancel the jobs (queued first, so none starts), wait for each to end; their status messages."""
    statuses = [await accepted_status(interaction) for interaction in accepted]
    for status in reversed(statuses):
        press = await world.fake.press_button(status, label="Cancel", user=status.interaction.user)
        await press.wait_acknowledged()
    for status in statuses:
        await wait_title(world.fake, status, FINAL_TITLES)
        assert title(status) == CANCELLED_TITLE, status.text
        assert finals_for(world.fake, job_prefix(status)) == [status]
    return statuses


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def capped(tmp_path_factory, images_dir):
    overrides = {"limits": {"cooldown_s": 0.0, "max_jobs_per_user": JOBS_PER_USER, "queue_size": QUEUE_SIZE}}
    async with running_bot(tmp_path_factory.mktemp("caps"), images_dir, overrides) as world:
        yield world


async def test_a_users_burst_gets_no_more_jobs_than_the_per_user_limit(capped):
    user = capped.user()
    accepted, refusals = split(await burst(capped, [user] * (JOBS_PER_USER + 2)))
    assert len(accepted) == JOBS_PER_USER, refusals
    assert all(f"You already have {JOBS_PER_USER} jobs" in text for text in refusals), refusals
    await cancel_all(capped, accepted)


async def test_an_accepted_job_still_being_confirmed_counts_once_against_its_users_limit(capped):
    user = capped.user()
    # The first job's confirmation waits out a rate limit, so the second request arrives while the
    # first is queued but not yet announced: the job must count once then, not as queued and in progress.
    held = capped.fake.rate_limit_next("PATCH", r"^/webhooks/\d+/[^/]+/messages/@original$", retry_after=5.0)
    first = await stylize(capped.fake, user, content=capped.images.content, preset="the_scream", quality="high")
    await capped.fake.wait_for(lambda: held.exhausted, timeout=30, what="the first confirmation held")
    second = await stylize(capped.fake, user, content=capped.images.content, preset="the_scream", quality="high")
    answer = (await second.wait_original(timeout=30)).content
    assert "is queued" in answer, f"refused while the user's one job was being confirmed: {answer!r}"
    assert "is queued" in (await first.wait_original(timeout=30)).content
    await cancel_all(capped, [first, second])


async def test_a_burst_from_many_users_fills_the_queue_exactly_to_its_cap(capped):
    in_flight = QUEUE_SIZE + 1  # the queue plus the one job running
    accepted, refusals = split(await burst(capped, [capped.user() for _ in range(in_flight + 3)]))
    assert len(accepted) == in_flight, refusals
    assert len(refusals) == 3 and all("The queue is full. Please try again in about" in t for t in refusals), refusals
    await cancel_all(capped, accepted)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def cooled(tmp_path_factory, images_dir):
    overrides = {"limits": {"cooldown_s": 600.0, "max_jobs_per_user": JOBS_PER_USER, "queue_size": QUEUE_SIZE}}
    async with running_bot(tmp_path_factory.mktemp("cooldown"), images_dir, overrides) as world:
        yield world


async def test_simultaneous_requests_from_one_user_cannot_skip_the_cooldown(cooled):
    accepted, refusals = split(await burst(cooled, [cooled.user()] * 3))
    assert len(accepted) == 1, f"{len(accepted)} jobs accepted inside one 600 s cooldown; refusals: {refusals}"
    # Requests still in flight count against the user's job limit from the first gate, so a third one
    # sent with two others may meet that limit before the cooldown.
    assert all("Slow down a little" in text or "You already have" in text for text in refusals), refusals
    await cancel_all(cooled, accepted)

