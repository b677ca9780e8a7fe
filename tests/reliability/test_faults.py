"""Faults around a running bot: a misbehaving CDN, Discord's REST failing or rate limiting the final answer,
the gateway dropping mid-job, a worker process killed mid-job.

One bot serves the module. Status messages are only edited when a job starts and when it
ends (progress edits are spaced far apart), so a fault aimed at a job's status message after
it shows "running" hits exactly its final answer.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import time

import pytest
import pytest_asyncio

from tests.bot.harness import (
    DONE_TITLE,
    FINAL_TITLES,
    accepted_status,
    finals_for,
    job_prefix,
    refusal,
    stylize,
    title,
    wait_title,
)
from tests.fake_discord import CdnFault, FakeMessage
from tests.reliability.support import FAILED_TITLE, RUNNING_TITLE, BotWorld, running_bot, wait_process_exit

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]

DOWNLOAD_TIMEOUT_S = 3.0
BACKOFF_S = 0.5
# How many times discord.py itself sends a request that keeps failing with a 5xx before raising.
DISCORD_PY_TRIES = 5


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world(tmp_path_factory, images_dir):
    overrides = {
        "progress": {"edit_interval_s": 600.0, "queue_edit_interval_s": 600.0},
        "downloads": {"timeout_s": DOWNLOAD_TIMEOUT_S},
        "delivery": {"attempts": 3, "backoff_s": BACKOFF_S},
        # Long enough (a few seconds) to act while it runs, short enough to wait for.
        "quality.balanced": {"size": 40, "steps": 60},
    }
    async with running_bot(tmp_path_factory.mktemp("faults"), images_dir, overrides) as world:
        yield world


async def running_job(world: BotWorld, quality: str = "balanced") -> FakeMessage:
    """Start a job and return its status message once it shows the job running."""
    interaction = await stylize(world.fake, world.user(), content=world.images.content, preset="shipwreck",
                                quality=quality)
    status = await accepted_status(interaction)
    await world.fake.wait_for(lambda: title(status) in (RUNNING_TITLE, *FINAL_TITLES), 60, "the job to start")
    assert title(status) == RUNNING_TITLE, f"the job ended before the test could act: {status.text}"
    return status


def status_edits(world: BotWorld, status: FakeMessage) -> list:
    return world.fake.requests_to("PATCH", rf"/messages/{status.id}$")


async def test_each_cdn_fault_gets_its_own_clear_ephemeral_message(world):
    fake = world.fake
    png = fake.cdn.get(world.images.content).data
    too_slow = f"took longer than {DOWNLOAD_TIMEOUT_S:g} s"
    broken = fake.add_attachment(png, "e500.png", fault=CdnFault.status_code(500))
    cases = [
        (broken, "HTTP 500"),
        (fake.add_attachment(png, "e404.png", fault=CdnFault.status_code(404)), "HTTP 404"),
        (fake.add_attachment(png, "hang.png", fault=CdnFault.hang(60)), too_slow),
        (fake.add_attachment(png, "trickle.png", fault=CdnFault.trickle(chunk=16, interval=0.5)), too_slow),
        (
            fake.add_attachment(png, "liar.png", declared_size=len(png) // 2, fault=CdnFault.no_content_length()),
            "larger than Discord said",
        ),
    ]
    interactions = await asyncio.gather(*(
        stylize(fake, world.user(), content=upload, preset="starry_night", quality="fast") for upload, _ in cases
    ))
    for (upload, words), interaction in zip(cases, interactions, strict=True):
        message = await refusal(interaction, timeout=DOWNLOAD_TIMEOUT_S + 20)
        assert f"I could not download the content image (`{upload['filename']}`)" in message
        assert words in message, message

    fake.cdn.set_fault(broken, None)
    status = await accepted_status(
        await stylize(fake, world.user(), content=broken, preset="starry_night", quality="fast")
    )
    await wait_title(fake, status, DONE_TITLE)


def gaps(requests: list) -> list[float]:
    """Seconds from each request's answer to the next request."""
    return [later.started_at - earlier.finished_at for earlier, later in itertools.pairwise(requests)]


async def test_a_500_on_the_final_edit_that_outlasts_discord_py_is_retried_by_the_bot_and_delivered_once(world):
    status = await running_job(world)
    # discord.py's webhook client makes 5 tries of its own; a sixth failure can only be got past by the bot's loop.
    failures = DISCORD_PY_TRIES + 1
    rule = world.fake.fail_next("PATCH", rf"/messages/{status.id}$", status=500, count=failures)
    await wait_title(world.fake, status, FINAL_TITLES, timeout=120)
    assert title(status) == DONE_TITLE and status.attachments, status.text
    assert finals_for(world.fake, job_prefix(status)) == [status]

    assert rule.hits == failures
    attempts = status_edits(world, status)[-(failures + 1):]
    assert [a.status for a in attempts] == [500] * failures + [200]
    assert attempts[-1].files, "the delivered edit must carry the image"
    bot_retry = gaps(attempts)[DISCORD_PY_TRIES - 1]
    assert bot_retry >= BACKOFF_S, f"the bot retried after {bot_retry:.2f} s, its backoff is {BACKOFF_S} s"


async def test_a_429_from_a_proxy_on_the_final_edit_is_waited_out_for_its_retry_after_and_delivered_once(world):
    retry_after = 2.0  # longer than the bot's own backoff (0.5 s, then 1 s), so only honouring it passes
    status = await running_job(world)
    rule = world.fake.rate_limit_next("PATCH", rf"/messages/{status.id}$", retry_after=retry_after, count=2,
                                      from_proxy=True)
    await wait_title(world.fake, status, FINAL_TITLES)
    assert title(status) == DONE_TITLE and status.attachments, status.text
    assert finals_for(world.fake, job_prefix(status)) == [status]

    assert rule.hits == 2
    attempts = status_edits(world, status)[-3:]
    assert [a.status for a in attempts] == [429, 429, 200]
    waits = gaps(attempts)
    assert min(waits) >= retry_after, f"Retry-After was {retry_after} s, the bot came back after {waits}"


async def test_failing_edits_after_the_token_expired_are_retried_with_the_bots_token_and_delivered_once(world):
    fake = world.fake
    status = await running_job(world)
    requester = status.interaction.user
    fake.token_ttl = 0.0
    try:
        # 503 is not one discord.py retries itself: these two failures reach the bot's own retry loop.
        rule = fake.fail_next("PATCH", rf"^/channels/\d+/messages/{status.id}$", status=503, count=2)
        await wait_title(fake, status, FINAL_TITLES, timeout=60)
        ping = await fake.wait_for_message(lambda m: m.kind == "channel" and m.mentions_user(requester), timeout=60)
    finally:
        fake.token_ttl = 15 * 60.0
    assert title(status) == DONE_TITLE and status.attachments, status.text
    assert rule.hits == 2
    assert finals_for(fake, job_prefix(status)) == [status]
    assert ping.message_reference["message_id"] == str(status.id) and ping.mentions == [requester.id]
    edits = fake.requests_to("PATCH", rf"^/channels/\d+/messages/{status.id}$")[-3:]
    assert [e.status for e in edits] == [503, 503, 200]
    first, second = gaps(edits)
    assert first >= BACKOFF_S and second >= 2 * BACKOFF_S, f"the backoff must double from {BACKOFF_S} s: {first, second}"


async def test_a_gateway_disconnect_mid_job_is_resumed_and_the_job_still_delivered(world):
    fake = world.fake
    status = await running_job(world)
    resumes = fake.gateway.resumes
    dropped_at = time.monotonic()
    await fake.disconnect_gateway(code=4000)
    await fake.wait_for(lambda: fake.gateway.resumes == resumes + 1, 30, "the bot to resume its session")
    await wait_title(fake, status, FINAL_TITLES)
    assert title(status) == DONE_TITLE, status.text
    assert status.history[-1].at > dropped_at, "the job must still have been running when the gateway dropped"
    assert finals_for(fake, job_prefix(status)) == [status]

    # A lost session (no resume, reconnects refused for a while): the bot identifies anew and keeps going.
    status = await running_job(world)
    identifies = fake.gateway.identifies
    await fake.disconnect_gateway(code=4000, resume=False, down_for=1.0)
    await fake.wait_ready(identifies + 1, timeout=60)
    await wait_title(fake, status, FINAL_TITLES)
    assert title(status) == DONE_TITLE, status.text
    assert finals_for(fake, job_prefix(status)) == [status]

    after = await accepted_status(
        await stylize(fake, world.user(), content=world.images.content, preset="the_scream", quality="fast")
    )
    await wait_title(fake, after, DONE_TITLE)
    await world.wait_healthy()


async def test_a_worker_killed_mid_job_fails_it_clearly_and_the_next_job_works(world):
    fake = world.fake
    status = await running_job(world, quality="high")
    queued = await accepted_status(
        await stylize(fake, world.user(), content=world.images.content, style=world.images.style, quality="fast")
    )
    (worker,) = world.workers()
    os.kill(worker, signal.SIGKILL)
    await wait_process_exit(worker)

    await wait_title(fake, status, FINAL_TITLES)
    assert title(status) == FAILED_TITLE, status.text
    assert "worker crashed" in status.text and "try again" in status.text
    assert finals_for(fake, job_prefix(status)) == [status]

    await wait_title(fake, queued, FINAL_TITLES, timeout=120)
    assert title(queued) == DONE_TITLE, f"the job queued behind the crash must run on a new worker: {queued.text}"
    assert finals_for(fake, job_prefix(queued)) == [queued]
    (replacement,) = world.workers()
    assert replacement != worker
    assert await world.health() == (200, {"gateway": True, "pool": True})
