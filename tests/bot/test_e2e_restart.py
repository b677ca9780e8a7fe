"""Restarts, end to end: SIGTERM with a job running (paused, or finished within the grace period), buttons
after a restart, SIGKILL mid-job.

Three bot processes share one data folder in turn, as a self-hoster's would across
upgrades and crashes.  Every job must reach exactly one final message.
"""

from __future__ import annotations

import time

import pytest

from tests.bot.harness import (
    DONE_TITLE,
    BotProcess,
    accepted_status,
    add_images,
    bot_fake_discord,
    finals_for,
    job_prefix,
    refusal,
    stylize,
    title,
    wait_title,
    write_config,
)

pytestmark = pytest.mark.slow

PAUSED_TITLE = "⏸️ Paused"


async def test_jobs_and_buttons_survive_sigterm_and_sigkill(tmp_path, images_dir):
    async with bot_fake_discord() as fake:
        config = write_config(
            tmp_path,
            fake,
            {"pool": {"progress_every": 1}, "quality.high": {"size": 40, "steps": 80}},
        )
        images = add_images(fake, images_dir)
        first_user, second_user, third_user, fourth_user = (fake.add_user(f"user{i}") for i in range(4))

        bot = await BotProcess.start(config, fake, "bot-1.log")
        try:
            await bot.wait_ready(fake, identifies=1)
            finished = await accepted_status(
                await stylize(fake, first_user, content=images.content, style=images.style, quality="fast")
            )
            await wait_title(fake, finished, DONE_TITLE)
            long_job = await accepted_status(
                await stylize(fake, second_user, content=images.content, preset="the_scream", quality="high")
            )
            await fake.wait_for(lambda: "Iteration" in long_job.text, 60, "the long job to report progress")
            assert await bot.terminate() == 0, bot.log()[-3000:]
        finally:
            await bot.kill()
        assert title(long_job) == PAUSED_TITLE, "SIGTERM must tell the requester their job is paused"
        assert "will continue" in long_job.text

        bot = await BotProcess.start(config, fake, "bot-2.log")
        try:
            await bot.wait_ready(fake, identifies=2)
            await wait_title(fake, long_job, DONE_TITLE, timeout=120)
            assert "Resumed after a restart" in "\n".join(
                v.embeds[0].get("description", "") for v in long_job.history if v.embeds
            )

            press = await fake.press_button(finished, label="More style", user=first_user)
            more = await accepted_status(press)
            await wait_title(fake, more, DONE_TITLE)
            assert "strength ×2" in more.text

            crashed = await accepted_status(
                await stylize(fake, third_user, content=images.content, preset="shipwreck", quality="high")
            )
            queued = await accepted_status(
                await stylize(fake, fourth_user, content=images.content, style=images.style, quality="fast")
            )
            also_queued = await accepted_status(
                await stylize(fake, fourth_user, content=images.content, preset="starry_night", quality="fast")
            )
            over_limit = await stylize(fake, fourth_user, content=images.content, preset="starry_night", quality="fast")
            assert "You already have 2 jobs queued or running" in await refusal(over_limit)
            await fake.wait_for(lambda: "Iteration" in crashed.text, 60, "the job to run before the crash")
        finally:
            await bot.kill()

        bot = await BotProcess.start(config, fake, "bot-3.log")
        try:
            await bot.wait_ready(fake, identifies=3)
            await wait_title(fake, crashed, DONE_TITLE, timeout=120)
            await wait_title(fake, queued, DONE_TITLE, timeout=120)
            await wait_title(fake, also_queued, DONE_TITLE, timeout=120)
            assert await bot.terminate() == 0, bot.log()[-3000:]
        finally:
            await bot.kill()

        for message in (finished, long_job, more, crashed, queued, also_queued):
            assert finals_for(fake, job_prefix(message)) == [message]


async def test_sigterm_lets_the_running_job_finish_within_its_grace_and_pauses_the_queued_one(tmp_path, images_dir):
    async with bot_fake_discord() as fake:
        config = write_config(
            tmp_path,
            fake,
            {
                "pool": {"progress_every": 1},
                # Long enough to be caught running, far shorter than the grace it gets.
                "quality.balanced": {"size": 40, "steps": 120},
                "shutdown": {"grace_s": 300.0},
            },
        )
        images = add_images(fake, images_dir)
        runner, waiter = fake.add_user("runner"), fake.add_user("waiter")

        bot = await BotProcess.start(config, fake, "bot-1.log")
        try:
            await bot.wait_ready(fake, identifies=1)
            running = await accepted_status(
                await stylize(fake, runner, content=images.content, preset="the_scream", quality="balanced")
            )
            await fake.wait_for(lambda: "Iteration" in running.text, 60, "the job to report progress")
            queued = await accepted_status(
                await stylize(fake, waiter, content=images.content, style=images.style, quality="fast")
            )
            assert title(queued) != DONE_TITLE and "Iteration" not in queued.text, "one worker: this one must wait"
            assert title(running) != DONE_TITLE, "the job ended before the test could send SIGTERM"
            sigterm_at = time.monotonic()
            assert await bot.terminate(timeout=300) == 0, bot.log()[-3000:]
        finally:
            await bot.kill()
        assert title(running) == DONE_TITLE, f"the running job must finish within grace_s: {running.text}"
        assert running.attachments, "with its image"
        assert running.history[-1].at > sigterm_at, "it finished after SIGTERM, while the bot waited for it"
        assert all(not v.embeds or v.embeds[0].get("title") != PAUSED_TITLE for v in running.history)
        assert title(queued) == PAUSED_TITLE, f"the queued job must be paused, not run or lost: {queued.text}"

        bot = await BotProcess.start(config, fake, "bot-2.log")
        try:
            await bot.wait_ready(fake, identifies=2)
            await wait_title(fake, queued, DONE_TITLE, timeout=120)
            assert "Resumed after a restart" in "\n".join(
                v.embeds[0].get("description", "") for v in queued.history if v.embeds
            )
            assert await bot.terminate() == 0, bot.log()[-3000:]
        finally:
            await bot.kill()
        for message in (running, queued):
            assert finals_for(fake, job_prefix(message)) == [message]
