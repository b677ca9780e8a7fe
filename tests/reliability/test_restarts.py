"""The bot process SIGKILLed twice with jobs queued, running and half-delivered: after the restarts every
job is delivered exactly once, and a killed bot leaves no worker process behind.

Three bot processes share one data folder in turn. Status messages are only edited when a
job starts and ends, so a fault aimed at a running job's status message hits its final answer.
"""

from __future__ import annotations

import pytest

from tests.bot.harness import (
    DONE_TITLE,
    FINAL_TITLES,
    BotProcess,
    accepted_status,
    add_images,
    bot_fake_discord,
    finals_for,
    job_prefix,
    stylize,
    title,
    wait_title,
    write_config,
)
from tests.fake_discord import FakeMessage
from tests.reliability.support import RUNNING_TITLE, unexpected_tracebacks, wait_process_exit, worker_pids

pytestmark = pytest.mark.slow

OVERRIDES = {
    "progress": {"edit_interval_s": 600.0, "queue_edit_interval_s": 600.0},
    "quality.balanced": {"size": 40, "steps": 60},
    "limits": {"queue_size": 16},
}


def running_since(message: FakeMessage, version: int) -> bool:
    """Whether the message was shown running in a version after ``version`` (e.g. after a restart)."""
    return any(v.embeds and v.embeds[0].get("title") == RUNNING_TITLE for v in message.history[version:])


async def kill_bot(bot: BotProcess) -> None:
    """SIGKILL the bot and wait until its orphaned workers are gone too."""
    workers = worker_pids(bot.process.pid)
    assert workers, "the bot should have a worker to orphan"
    await bot.kill()
    for pid in workers:
        await wait_process_exit(pid)


async def test_jobs_survive_two_sigkills_and_each_is_delivered_exactly_once(tmp_path, images_dir):
    async with bot_fake_discord() as fake:
        config = write_config(tmp_path, fake, OVERRIDES)
        images = add_images(fake, images_dir)
        users = [fake.add_user(f"user{i}") for i in range(5)]

        bot = await BotProcess.start(config, fake, "bot-1.log")
        try:
            await bot.wait_ready(fake, identifies=1)
            await fake.wait_for_command("stylize")
            delivering = await accepted_status(
                await stylize(fake, users[0], content=images.content, preset="shipwreck", quality="balanced")
            )
            await fake.wait_for(lambda: title(delivering) == RUNNING_TITLE, 60, "the first job to start")
            # Discord fails every attempt at this job's final answer until the bot is killed mid-delivery.
            outage = fake.fail_next("PATCH", rf"/messages/{delivering.id}$", status=500, count=1000)
            running = await accepted_status(
                await stylize(fake, users[1], content=images.content, style=images.style, quality="balanced")
            )
            queued = [
                await accepted_status(
                    await stylize(fake, user, content=images.content, preset="the_scream", quality="fast")
                )
                for user in users[2:]
            ]
            await fake.wait_for(lambda: outage.hits >= 1, 60, "the first job's final answer to be attempted")
            await fake.wait_for(lambda: title(running) == RUNNING_TITLE, 60, "the second job to start")
            assert all(title(message) not in FINAL_TITLES for message in queued)
            await kill_bot(bot)
        finally:
            await bot.kill()
        outage.count = outage.hits

        jobs = [delivering, running, *queued]
        versions = len(running.history)
        bot = await BotProcess.start(config, fake, "bot-2.log")
        try:
            await bot.wait_ready(fake, identifies=2)
            await wait_title(fake, delivering, FINAL_TITLES)
            await fake.wait_for(lambda: running_since(running, versions), 60, "the second job to run again")
            await kill_bot(bot)
        finally:
            await bot.kill()

        bot = await BotProcess.start(config, fake, "bot-3.log")
        try:
            await bot.wait_ready(fake, identifies=3)
            for message in jobs:
                await wait_title(fake, message, FINAL_TITLES, timeout=120)
            assert await bot.terminate() == 0, bot.log()[-3000:]
        finally:
            await bot.kill()

        for message in jobs:
            assert title(message) == DONE_TITLE and message.attachments, message.text
            assert finals_for(fake, job_prefix(message)) == [message], "exactly one final message per job"
            assert message.interaction.followups == [message], "one public message per request, across restarts"
        finals_posted = [m for m in fake.messages if m.kind == "channel" and m.embeds]
        assert finals_posted == [], "every answer was edited into its status message"
        assert "Resumed after a restart" in "\n".join(
            version.embeds[0].get("description", "") for version in running.history if version.embeds
        )
        for log in ("bot-1.log", "bot-2.log", "bot-3.log"):
            text = (tmp_path / log).read_text(errors="replace")
            assert not unexpected_tracebacks(text), f"{log}:\n" + "\n".join(unexpected_tracebacks(text))
