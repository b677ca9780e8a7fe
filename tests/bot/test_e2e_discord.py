"""The bot's Discord surface end to end: channels and threads, commands, menus, buttons and modals.

``python -m bot`` logged in to the fake Discord, with the real pool and engine on CPU; one bot
process serves the module, and each test uses users of its own.
"""

from __future__ import annotations

import pytest
import pytest_asyncio

from tests.bot.harness import (
    DONE_TITLE,
    BotProcess,
    Images,
    accepted_status,
    add_images,
    refusal,
    wait_title,
    write_config,
)
from tests.fake_discord import FakeDiscord
from tests.fake_discord.world import FORUM_CHANNEL, VOICE_CHANNEL

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]


class World:
    def __init__(self, fake: FakeDiscord, bot: BotProcess, images: Images) -> None:
        self.fake = fake
        self.bot = bot
        self.images = images
        self._users = 0

    def user(self, permissions: object = None):
        self._users += 1
        return self.fake.add_user(f"user{self._users}", permissions=permissions)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world(tmp_path_factory, images_dir):
    folder = tmp_path_factory.mktemp("bot")
    async with FakeDiscord() as fake:
        config = write_config(folder, fake, {"limits": {"max_jobs_per_user": 3}})
        bot = await BotProcess.start(config, fake)
        try:
            await bot.wait_ready(fake)
            await fake.wait_for_command("stylize")
            yield World(fake, bot, add_images(fake, images_dir))
            assert await bot.terminate() == 0, bot.log()[-3000:]
        finally:
            await bot.kill()
        assert fake.token not in bot.log(), "the token must never be logged"
        assert "Traceback" not in bot.log(), bot.log()[-5000:]


async def _settings(world: World, subcommand: str, **options) -> str:
    admin = world.fake.owner
    handle = await world.fake.invoke_command("nst-settings", options, subcommand=subcommand, user=admin)
    return (await handle.wait_original()).content


async def test_threads_and_forum_posts_under_an_allowed_channel_are_allowed(world):
    fake = world.fake
    forum = fake.add_channel("gallery", type=FORUM_CHANNEL)
    voice = fake.add_channel("lounge", type=VOICE_CHANNEL)
    elsewhere = fake.add_channel("off-topic")
    try:
        for channel in (fake.channel, forum, voice):
            assert f"<#{channel.id}>" in await _settings(world, "allow-channel", channel=channel)
        thread = fake.add_thread(fake.channel, "remixes")
        post = fake.add_thread(forum, "my holiday")
        for channel in (thread, post, voice):
            interaction = await fake.invoke_command(
                "stylize", {"content": world.images.content, "preset": "starry_night", "quality": "fast"},
                user=world.user(), channel=channel,
            )
            status = await accepted_status(interaction)
            assert status.channel_id == channel.id
            await wait_title(fake, status, DONE_TITLE)
        refused = await fake.invoke_command(
            "stylize", {"content": world.images.content, "preset": "starry_night"},
            user=world.user(), channel=fake.add_thread(elsewhere, "elsewhere"),
        )
        assert "not enabled in this channel" in await refusal(refused)
    finally:
        await _settings(world, "all-channels")
