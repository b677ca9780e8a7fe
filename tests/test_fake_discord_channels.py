"""Self-tests of the fake Discord's channel kinds (threads, forums, voice) and its history permission."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import discord
import pytest
from discord import app_commands

from tests.fake_discord import FakeDiscord, InvalidInvocation
from tests.fake_discord.world import CATEGORY_CHANNEL, FORUM_CHANNEL, VOICE_CHANNEL


class WhereBot(discord.Client):
    """Answers /where with the channel's class and parent, and /pick with the channel it was given."""

    def __init__(self) -> None:
        super().__init__(intents=discord.Intents.default())
        self.tree = app_commands.CommandTree(self)
        self.tree.add_command(app_commands.Command(name="where", description="Where am I", callback=self.where))
        self.tree.add_command(app_commands.Command(name="pick", description="Pick a channel", callback=self.pick))

    async def setup_hook(self) -> None:
        await self.tree.sync()

    async def where(self, interaction: discord.Interaction) -> None:
        channel = interaction.channel
        await interaction.response.send_message(f"{type(channel).__name__} {getattr(channel, 'parent_id', None)}")

    async def pick(self, interaction: discord.Interaction, channel: discord.TextChannel | discord.ForumChannel) -> None:
        await interaction.response.send_message(f"picked {channel.name}")


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(bot_permissions=["view_channel", "send_messages"]) as fake:
        yield fake


@pytest.fixture
async def bot(fake: FakeDiscord) -> AsyncIterator[WhereBot]:
    with fake.patch_discord_py():
        bot = WhereBot()
        task = asyncio.create_task(bot.start(fake.token))
        await fake.wait_ready()
        await fake.wait_for_command("where")
        yield bot
        await bot.close()
        await task


async def test_threads_and_forum_posts_arrive_as_threads_with_their_parent(fake: FakeDiscord, bot: WhereBot) -> None:
    thread = fake.add_thread(fake.channel, "chat")
    forum = fake.add_channel("gallery", type=FORUM_CHANNEL)
    post = fake.add_thread(forum, "my picture")
    for channel, parent in ((thread, fake.channel), (post, forum)):
        handle = await fake.invoke_command("where", channel=channel)
        answer = await handle.wait_original(lambda m: m.content)
        assert answer.content == f"Thread {parent.id}"
        assert answer.channel_id == channel.id
    await fake.wait_for(lambda: bot.get_channel(post.id) is not None)
    assert isinstance(bot.get_channel(forum.id), discord.ForumChannel)


async def test_channel_options_are_limited_to_the_declared_channel_types(fake: FakeDiscord, bot: WhereBot) -> None:
    forum = fake.add_channel("gallery", type=FORUM_CHANNEL)
    handle = await fake.invoke_command("pick", {"channel": forum})
    assert (await handle.wait_original(lambda m: m.content)).content == "picked gallery"
    for kind in (VOICE_CHANNEL, CATEGORY_CHANNEL):
        with pytest.raises(InvalidInvocation, match="takes channels of types"):
            await fake.invoke_command("pick", {"channel": fake.add_channel(f"kind{kind}", type=kind)})


async def test_history_needs_read_message_history(fake: FakeDiscord, bot: WhereBot) -> None:
    fake.guild.everyone.permissions &= ~(1 << 16)  # neither @everyone nor the bot's role grants it now
    channel = bot.get_partial_messageable(fake.channel.id)
    sent = await channel.send("hello")
    with pytest.raises(discord.Forbidden, match="read_message_history"):
        [message async for message in channel.history(limit=5)]
    with pytest.raises(discord.Forbidden, match="read_message_history"):
        await channel.fetch_message(sent.id)
    fake.guild.roles[fake.guild.member_roles[fake.bot_user.id][0]].permissions |= 1 << 16
    assert [message.id async for message in channel.history(limit=5)] == [sent.id]
