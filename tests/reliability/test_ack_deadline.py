"""Discord's 3 s acknowledgement deadline, enforced by the fake, for a bot with nothing else to do.

Elsewhere the fake does not enforce it: bursts of interactions while a CPU worker computes
on a shared two-core machine make it a measure of the machine's load. Here the bot runs
no job while the burst arrives (the commands are refused or answered without one), so
what is measured is the bot's own path from an interaction to its acknowledgement.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.bot.harness import BotProcess, add_images, refusal, write_config
from tests.fake_discord import FakeDiscord

pytestmark = pytest.mark.slow

ACK_DEADLINE_S = 3.0
BURST = 10


async def test_a_burst_to_an_idle_bot_is_acknowledged_within_discord_s_deadline(tmp_path, images_dir):
    async with FakeDiscord(ack_deadline=ACK_DEADLINE_S) as fake:
        bot = await BotProcess.start(write_config(tmp_path, fake), fake)
        try:
            await bot.wait_ready(fake)
            await fake.wait_for_command("stylize")
            images = add_images(fake, images_dir)
            admin = fake.add_user("admin", permissions=["manage_guild"])
            elsewhere = fake.add_channel("art")
            allow = await fake.invoke_command("nst-settings", {"channel": elsewhere}, subcommand="allow-channel",
                                              user=admin)
            await allow.wait_original()

            # /stylize where it is not enabled: each is deferred, then refused (no job starts); /nst status answers.
            users = [fake.add_user(f"burst{i}") for i in range(BURST)]
            interactions = await asyncio.gather(
                *(
                    fake.invoke_command("stylize", {"content": images.content, "style": images.style}, user=user)
                    for user in users
                ),
                *(fake.invoke_command("nst", subcommand="status", user=user) for user in users[:3]),
            )
            for interaction in interactions:
                await interaction.wait_acknowledged(timeout=2 * ACK_DEADLINE_S)
            for interaction in interactions[:BURST]:
                assert "not enabled in this channel" in await refusal(interaction)
            for interaction in interactions:
                assert interaction.rejections == [], interaction.rejections
                assert interaction.ack_latency is not None and interaction.ack_latency <= ACK_DEADLINE_S
            assert await bot.terminate() == 0, bot.log()[-3000:]
        finally:
            await bot.kill()
