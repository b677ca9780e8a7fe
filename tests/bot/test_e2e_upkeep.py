"""The bot's upkeep, end to end: the periodic sweep delivers what Discord refused earlier and prunes old
jobs (whose buttons then say so), and /healthz answers 503 while the gateway or the pool is down.
"""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
import pytest_asyncio

from tests.bot.harness import (
    DONE_TITLE,
    FINAL_TITLES,
    accepted_status,
    finals_for,
    job_prefix,
    stylize,
    title,
    wait_title,
)
from tests.pool.test_pool_lifecycle import save_vgg19_as_torchvision_file
from tests.reliability.support import RUNNING_TITLE, BotWorld, running_bot, wait_process_exit

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]

SWEEP_INTERVAL_S = 1.0
RETENTION_S = 7.2
# Guards against a hang; far longer than the few sweeps each wait needs.
WAIT_S = 60.0


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world(tmp_path_factory, images_dir):
    folder = tmp_path_factory.mktemp("upkeep")
    weights = folder / "vgg19.pth"
    save_vgg19_as_torchvision_file(weights)
    overrides = {
        "storage": {"retention_hours": RETENTION_S / 3600, "prune_interval_s": SWEEP_INTERVAL_S},
        "pool": {"weights": str(weights)},
        "progress": {"edit_interval_s": 600.0, "queue_edit_interval_s": 600.0},
        # Long enough (a few seconds) to act while it runs.
        "quality.balanced": {"size": 40, "steps": 60},
    }
    async with running_bot(folder, images_dir, overrides) as world:
        yield world


async def until(check, what: str, timeout: float = WAIT_S):
    """Ask ``check()`` a few times a second until it is truthy (for state outside the fake Discord)."""
    async with asyncio.timeout(timeout):
        while not (value := await check()):
            await asyncio.sleep(0.1)
    return value


async def test_an_answer_discord_refused_for_a_long_while_is_delivered_by_the_sweep(world):
    fake = world.fake
    status = await accepted_status(
        await stylize(fake, world.user(), content=world.images.content, preset="shipwreck", quality="balanced")
    )
    await fake.wait_for(lambda: title(status) in (RUNNING_TITLE, *FINAL_TITLES), 60, "the job to start")
    assert title(status) == RUNNING_TITLE, "the job ended before the test could act"
    # Progress edits are spaced far apart here, so the next edit of the status message is the final answer.
    # A limit longer than the bot will wait: it leaves the answer for later instead of sleeping.
    rule = fake.rate_limit_next("PATCH", rf"/messages/{status.id}$", retry_after=120, from_proxy=True)
    await wait_title(fake, status, FINAL_TITLES, timeout=WAIT_S)
    assert rule.hits == 1
    assert title(status) == DONE_TITLE and status.attachments, status.text
    assert finals_for(fake, job_prefix(status)) == [status]
    edits = fake.requests_to("PATCH", rf"/messages/{status.id}$")
    assert [e.status for e in edits[-2:]] == [429, 200]


async def test_old_jobs_are_pruned_and_their_buttons_say_the_result_is_too_old(world):
    fake = world.fake
    user = world.user()
    finished = await accepted_status(
        await stylize(fake, user, content=world.images.content, style=world.images.style, quality="fast")
    )
    await fake.wait_for(lambda: title(finished) == DONE_TITLE, 60, "the job to finish")
    results = world.config_path.parent / "data" / "results"
    prefix = job_prefix(finished)
    assert list(results.glob(f"{prefix}*.png")), "the result is kept while the job is"

    async def pruned() -> bool:
        return not list(results.glob(f"{prefix}*.png"))

    await until(pruned, "the sweep to prune the job", timeout=RETENTION_S + WAIT_S)
    press = await fake.press_button(finished, label="Re-run (new seed)", user=user)
    answer = await press.wait_original()
    assert answer.ephemeral and "This result is too old" in answer.content, answer.content
    assert not press.followups, "nothing may start from a pruned job"


async def test_healthz_answers_503_while_the_gateway_is_down_and_while_the_pool_is(world):
    fake = world.fake
    assert await world.health() == (200, {"gateway": True, "pool": True})

    async def gateway_down():
        return await world.health() == (503, {"gateway": False, "pool": True})

    await fake.disconnect_gateway(code=4000, resume=False, down_for=5.0)
    await until(gateway_down, "/healthz to report the gateway down")
    await world.wait_healthy(timeout=WAIT_S)

    # Workers that cannot start (their weights gone) leave no pool to serve.
    weights = world.config_path.parent / "vgg19.pth"
    hidden = weights.rename(weights.with_suffix(".away"))
    try:
        (worker,) = world.workers()
        os.kill(worker, signal.SIGKILL)
        await wait_process_exit(worker)

        async def pool_down():
            return await world.health() == (503, {"gateway": True, "pool": False})

        await until(pool_down, "/healthz to report the pool down")
    finally:
        hidden.rename(weights)
    await world.wait_healthy(timeout=WAIT_S)
    done = await accepted_status(
        await stylize(fake, world.user(), content=world.images.content, preset="starry_night", quality="fast")
    )
    await fake.wait_for(lambda: title(done) == DONE_TITLE, 60, "a job on the restarted pool")
