"""The real bot with ``[pool] backend = "ray"``, against the fake Discord.

The bot joins the session's small Ray as a second driver, so its actors are remote from it:
/stylize runs there end to end, a bot SIGKILLed mid-job delivers that job exactly once after
its restart, and an address where no Ray answers stops the bot at start with one sentence.
"""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import pytest

from tests.bot.harness import (
    DONE_TITLE,
    FINAL_TITLES,
    BotProcess,
    accepted_status,
    add_images,
    finals_for,
    job_prefix,
    stylize,
    title,
    wait_title,
    write_config,
)
from tests.fake_discord import FakeDiscord

pytestmark = pytest.mark.slow

RUNNING_TITLE = "🖌️ Stylising"


def ray_overrides(address: str) -> dict[str, dict[str, object]]:
    return {
        "pool": {"backend": "ray", "heartbeat_timeout_s": 10.0},
        "pool.ray": {"address": address, "cpu_workers": 1},
        # Long enough to still be running when the bot is killed, short enough to run again.
        "quality.balanced": {"size": 40, "steps": 80},
        "progress": {"edit_interval_s": 600.0, "queue_edit_interval_s": 600.0},
    }


async def healthy(bot: BotProcess) -> dict:
    """/healthz once it answers 200 (discord.py calls itself ready a moment after the gateway's READY)."""
    async with aiohttp.ClientSession() as session, asyncio.timeout(30):
        while True:
            async with session.get(f"http://127.0.0.1:{bot.http_port}/healthz") as response:
                if response.status == 200:
                    return await response.json()
            await asyncio.sleep(0.2)


async def test_stylize_on_ray_and_a_sigkilled_bot_delivers_its_remote_job_once(tmp_path, images_dir, ray_cluster):
    async with FakeDiscord() as fake:
        config = write_config(tmp_path, fake, ray_overrides(ray_cluster.address))
        images = add_images(fake, images_dir)
        user = fake.add_user("painter")

        bot = await BotProcess.start(config, fake, "bot-1.log")
        try:
            await bot.wait_ready(fake, identifies=1)
            await fake.wait_for_command("stylize")
            quick = await accepted_status(
                await stylize(fake, user, content=images.content, preset="starry_night", quality="fast")
            )
            await wait_title(fake, quick, DONE_TITLE, timeout=120)
            assert quick.attachments[0].image().size

            status = await (await fake.invoke_command("nst", subcommand="status", user=user)).wait_original()
            fields = {field["name"]: field["value"] for field in status.embeds[0]["fields"]}
            assert fields["Backend"].startswith("ray, 1 node\n") and fields["Backend"].endswith(": 1 worker")
            health = await healthy(bot)
            (node,) = health["nodes"]
            assert health == {"gateway": True, "pool": True, "backend": "ray", "nodes": {node: 1}}

            running = await accepted_status(
                await stylize(fake, user, content=images.content, style=images.style, quality="balanced")
            )
            await fake.wait_for(lambda: title(running) == RUNNING_TITLE, 120, "the job to start on its actor")
            await bot.kill()
        finally:
            await bot.kill()

        bot = await BotProcess.start(config, fake, "bot-2.log")
        try:
            await bot.wait_ready(fake, identifies=2)
            await wait_title(fake, running, FINAL_TITLES, timeout=180)
            assert await bot.terminate() == 0, bot.log()[-3000:]
        finally:
            await bot.kill()

        for message in (quick, running):
            assert title(message) == DONE_TITLE and message.attachments, message.text
            assert finals_for(fake, job_prefix(message)) == [message], "exactly one final message per job"
        assert "Resumed after a restart" in "\n".join(
            version.embeds[0].get("description", "") for version in running.history if version.embeds
        )


async def test_an_unreachable_ray_address_stops_the_bot_at_start_with_one_sentence(tmp_path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{sock.getsockname()[1]}"
    async with FakeDiscord() as fake:
        bot = await BotProcess.start(write_config(tmp_path, fake, ray_overrides(address)), fake)
        try:
            async with asyncio.timeout(120):
                assert await bot.process.wait() == 1
        finally:
            await bot.kill()
    log = bot.log()
    reasons = [line for line in log.splitlines() if "the worker pool could not start" in line]
    assert len(reasons) == 1, log[-3000:]
    assert reasons[0].endswith(f": Could not reach the Ray cluster at {address} (Connection refused)."), reasons[0]
    assert "Traceback" not in log, log[-3000:]
