"""Self-tests of the fake Discord: a real, unmodified discord.py bot logs in to it and is driven through it."""

from __future__ import annotations

import asyncio
import io
import os
import sys
import textwrap
import zlib
from collections.abc import AsyncIterator

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands
from PIL import Image

from tests.fake_discord import CdnFault, CommandNotPermitted, FakeDiscord, InvalidInvocation
from tests.fake_discord.compression import make_compressor

PRESETS = ["starry night", "the scream", "shipwreck", "seated nude"]


def png_bytes(size: tuple[int, int] = (8, 6), color: str = "red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


class VoteView(discord.ui.View):
    @discord.ui.button(label="Yes", custom_id="vote:yes")
    async def yes(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await interaction.response.edit_message(content=f"yes from {interaction.user.name}", view=None)


class TinyBot(commands.Bot):
    """A small bot written the way discord.py's examples write one, to exercise the fake."""

    def __init__(self) -> None:
        super().__init__(command_prefix="!", intents=discord.Intents.default())
        self.errors: list[BaseException] = []
        self.release_late = asyncio.Event()
        self.resumed = asyncio.Event()
        self.tree.on_error = self._on_tree_error
        self.tree.add_command(app_commands.Command(name="render", description="Upscale an image",
                                                   callback=self.render))
        self.tree.add_command(app_commands.Command(name="vote", description="Ask for a vote", callback=self.vote))
        preset = app_commands.Command(name="preset", description="Pick a preset", callback=self.preset)
        preset.autocomplete("name")(self.preset_names)
        self.tree.add_command(preset)
        admin = app_commands.Command(name="admin", description="Admins only", callback=self.admin)
        admin.default_permissions = discord.Permissions(manage_guild=True)
        self.tree.add_command(admin)
        self.tree.add_command(app_commands.Command(name="late", description="Answer late", callback=self.late))
        self.tree.add_command(app_commands.Command(name="steps", description="Two followups", callback=self.steps))

    async def setup_hook(self) -> None:
        await self.tree.sync()

    async def on_resumed(self) -> None:
        self.resumed.set()

    async def _on_tree_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        self.errors.append(error)

    @app_commands.describe(image="The image", scale="How much bigger")
    async def render(self, interaction: discord.Interaction, image: discord.Attachment,
                     scale: app_commands.Range[int, 1, 4] = 2) -> None:
        await interaction.response.defer(thinking=True)
        with Image.open(io.BytesIO(await image.read())) as source:
            bigger = source.resize((source.width * scale, source.height * scale))
        out = io.BytesIO()
        bigger.save(out, "PNG")
        out.seek(0)
        await interaction.edit_original_response(content=f"rendered x{scale}", attachments=[discord.File(out, "out.png")])

    async def vote(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message("vote now", view=VoteView())

    async def preset(self, interaction: discord.Interaction, name: str) -> None:
        preview = discord.File(io.BytesIO(png_bytes((4, 4), "blue")), "preview.png")
        await interaction.response.send_message(f"preset {name}", ephemeral=True, file=preview)

    async def preset_names(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return [app_commands.Choice(name=p.title(), value=p) for p in PRESETS if current.lower() in p]

    async def admin(self, interaction: discord.Interaction) -> None:
        member = interaction.user
        views = (interaction.permissions, member.guild_permissions, interaction.channel.permissions_for(member))
        await interaction.response.send_message(f"admin ok: {[p.manage_guild for p in views]}")

    async def late(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        await self.release_late.wait()
        try:
            await interaction.edit_original_response(content="done")
        except discord.HTTPException:
            await interaction.channel.send(f"{interaction.user.mention} done",
                                           allowed_mentions=discord.AllowedMentions(users=[interaction.user]))

    async def steps(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        await interaction.followup.send("first")
        await interaction.followup.send("second")


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as fake:
        yield fake


@pytest.fixture
async def bot(fake: FakeDiscord) -> AsyncIterator[TinyBot]:
    """TinyBot in this process, logged in to ``fake`` with its commands synced."""
    with fake.patch_discord_py():
        bot = TinyBot()
        task = asyncio.create_task(bot.start(fake.token))
        await fake.wait_ready()
        await fake.wait_for_command("render")
        yield bot
        await bot.close()
        await task


async def test_login_syncs_commands_over_zlib_stream(fake: FakeDiscord, bot: TinyBot) -> None:
    assert fake.commands.syncs[-1].guild_id is None
    assert set(fake.commands.syncs[-1].names) == {"render", "vote", "preset", "admin", "late", "steps"}
    assert fake.commands.find("admin", fake.guild.id)["default_member_permissions"] == str(1 << 5)
    assert [r.path for r in fake.requests[:2]] == ["/users/@me", "/oauth2/applications/@me"]
    assert fake.gateway.connections[0].compression == "zlib-stream"
    assert bot.user.id == fake.bot_user.id


async def test_command_defers_then_edits_with_a_file(fake: FakeDiscord, bot: TinyBot) -> None:
    source = fake.add_attachment(png_bytes((8, 6)), "in.png", width=8, height=6)

    handle = await fake.invoke_command("render", {"image": source, "scale": 3})
    message = await handle.wait_original()

    assert handle.ack_type == 5
    assert message.history[0].flags & 128, "a defer first shows the 'thinking' placeholder"
    assert message.content == "rendered x3" and not message.loading
    assert len(message.edits) == 1
    assert message.files[0].image().size == (24, 18)
    assert fake.cdn.hits(source) == 1


async def test_options_are_checked_against_the_registered_command(fake: FakeDiscord, bot: TinyBot) -> None:
    source = fake.add_attachment(png_bytes(), "in.png")
    with pytest.raises(InvalidInvocation, match="scale"):
        await fake.invoke_command("render", {"image": source, "scale": 9})
    with pytest.raises(InvalidInvocation, match="required"):
        await fake.invoke_command("render", {})
    with pytest.raises(InvalidInvocation, match="not registered"):
        await fake.invoke_command("nope")


async def test_button_press_reaches_the_view_callback(fake: FakeDiscord, bot: TinyBot) -> None:
    voter = fake.add_user("bob")
    handle = await fake.invoke_command("vote")
    message = await handle.wait_original()

    press = await fake.press_button(message, "vote:yes", user=voter)
    await press.wait_acknowledged()

    assert press.ack_type == 7
    assert message.content == "yes from bob" and message.buttons == []


async def test_autocomplete_returns_the_bots_choices(fake: FakeDiscord, bot: TinyBot) -> None:
    choices = await fake.autocomplete("preset", {"name": "sh"}, focused="name")
    assert choices == [{"name": "Shipwreck", "value": "shipwreck"}]


async def test_ephemeral_reply_with_a_file(fake: FakeDiscord, bot: TinyBot) -> None:
    handle = await fake.invoke_command("preset", {"name": "shipwreck"})
    message = await handle.wait_original()
    assert handle.ack_type == 4 and message.ephemeral
    assert message.text == "preset shipwreck"
    assert message.files[0].image().getpixel((0, 0)) == (0, 0, 255)


async def test_default_member_permissions_gate_the_command(fake: FakeDiscord, bot: TinyBot) -> None:
    with pytest.raises(CommandNotPermitted):
        await fake.invoke_command("admin")
    admin = fake.add_user("carol", permissions=["manage_guild"])
    handle = await fake.invoke_command("admin", user=admin)
    assert (await handle.wait_original()).content == "admin ok: [True, True, True]"


async def test_rate_limit_is_retried(fake: FakeDiscord, bot: TinyBot) -> None:
    rule = fake.rate_limit_next("POST", r"^/channels/\d+/messages$", retry_after=0.1)
    channel = bot.get_channel(fake.channel.id)

    sent = await channel.send("after a 429")

    attempts = fake.requests_to("POST", r"^/channels/\d+/messages$")
    assert [a.status for a in attempts] == [429, 200]
    assert rule.hits == 1 and fake.store.get(sent.id).content == "after a 429"


async def test_server_errors_are_retried_or_surface(fake: FakeDiscord, bot: TinyBot) -> None:
    channel = bot.get_channel(fake.channel.id)
    fake.fail_next("POST", r"/messages$", status=500)
    await channel.send("survives one 500")
    fake.fail_next("POST", r"/messages$", status=503)
    with pytest.raises(discord.HTTPException) as raised:
        await channel.send("never arrives")
    assert raised.value.status == 503
    assert [m.content for m in fake.channel_messages()] == ["survives one 500"]


async def test_discord_limits_are_enforced(fake: FakeDiscord, bot: TinyBot) -> None:
    channel = bot.get_channel(fake.channel.id)
    with pytest.raises(discord.HTTPException) as raised:
        await channel.send("x" * 2001)
    assert raised.value.code == 50035 and "2000" in str(raised.value)
    fake.attachment_size_limit = 10
    with pytest.raises(discord.HTTPException) as raised:
        await channel.send(file=discord.File(io.BytesIO(b"0" * 11), "big.bin"))
    assert raised.value.status == 413


async def test_gateway_disconnect_resumes_and_replays_missed_events(fake: FakeDiscord, bot: TinyBot) -> None:
    await fake.disconnect_gateway(code=4000, resume=True)
    handle = await fake.invoke_command("vote")

    await handle.wait_original()
    await bot.resumed.wait()
    events = fake.gateway.session.events
    resumed_seq = next(e["s"] for e in events if e["t"] == "RESUMED")
    assert handle.seq < resumed_seq, "the interaction was queued while disconnected and replayed on RESUME"
    assert fake.gateway.identifies == 1 and fake.gateway.resumes == 1
    assert fake.gateway.connections[-1].path == "/gateway-resume"


async def test_gateway_disconnect_without_resume_identifies_again(fake: FakeDiscord, bot: TinyBot) -> None:
    await fake.disconnect_gateway(code=4000, resume=False)
    await fake.wait_ready(identifies=2)
    handle = await fake.invoke_command("vote")
    assert (await handle.wait_original()).content == "vote now"


async def test_expired_interaction_token_falls_back_to_a_channel_message(bot: TinyBot, fake: FakeDiscord) -> None:
    fake.token_ttl = 0.0
    handle = await fake.invoke_command("late")
    await handle.wait_acknowledged()
    bot.release_late.set()

    message = await fake.wait_for_message(lambda m: m.kind == "channel")

    assert message.mentions_user(fake.user)
    assert [(r.status, r.code) for r in handle.rejections] == [(401, 50027)]


async def test_late_acknowledgement_is_refused(fake: FakeDiscord, bot: TinyBot) -> None:
    fake.ack_deadline = 0.0
    handle = await fake.invoke_command("vote")
    await handle.wait_for(lambda h: h.rejections, what="the late callback")
    assert not handle.acknowledged and handle.rejections[0].code == 10062


async def test_first_followup_after_defer_edits_the_placeholder(fake: FakeDiscord, bot: TinyBot) -> None:
    handle = await fake.invoke_command("steps")
    second = await handle.wait_followup()
    assert handle.original is not None and handle.original.content == "first"
    assert second.content == "second" and len(handle.messages) == 2


async def test_unknown_routes_are_reported(bot: TinyBot, fake: FakeDiscord) -> None:
    with pytest.raises(discord.NotFound):
        await bot.http.request(discord.http.Route("GET", "/nowhere/{thing}", thing=1))
    assert fake.unknown_routes == ["GET /nowhere/1"]
    with pytest.raises(AssertionError, match="unknown route"):
        fake.assert_clean()
    fake.unknown_routes.clear()


async def test_cdn_faults() -> None:
    async with FakeDiscord() as fake, aiohttp.ClientSession() as http:
        data = png_bytes((16, 16))
        broken = fake.add_attachment(data, "a.png", fault=CdnFault.status_code(500))
        slow = fake.add_attachment(data, "b.png", fault=CdnFault.trickle(chunk=32, interval=0.01))
        hanging = fake.add_attachment(data, "c.png", fault=CdnFault.hang(30))
        unsized = fake.add_attachment(data, "d.png", declared_size=10, fault=CdnFault.no_content_length())

        async with http.get(broken["url"]) as response:
            assert response.status == 500
        async with http.get(slow["url"]) as response:
            assert await response.read() == data
        with pytest.raises(asyncio.TimeoutError):
            async with http.get(hanging["url"], timeout=aiohttp.ClientTimeout(total=0.2)) as response:
                await response.read()
        async with http.get(unsized["url"]) as response:
            assert response.content_length is None and unsized["size"] == 10
            assert await response.read() == data
        assert fake.cdn.hits(hanging) == 1


def test_zlib_stream_frames_end_with_a_sync_flush() -> None:
    compress = make_compressor("zlib-stream")
    inflate = zlib.decompressobj()
    for text in (b'{"op":10}', b'{"op":11}'):
        frame = compress(text)
        assert frame.endswith(b"\x00\x00\xff\xff") and inflate.decompress(frame) == text


SUBPROCESS_BOT = """
    import os, discord, yarl
    from discord import app_commands

    discord.http.Route.BASE = os.environ["API_BASE_URL"]
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(os.environ["GATEWAY_URL"])
    client = discord.Client(intents=discord.Intents.default())
    tree = app_commands.CommandTree(client)

    @tree.command(description="Ping")
    async def ping(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("pong")

    client.setup_hook = tree.sync
    client.run(os.environ["DISCORD_TOKEN"], log_handler=None)
"""


async def test_a_bot_in_another_process_logs_in(fake: FakeDiscord, tmp_path) -> None:
    script = tmp_path / "ping_bot.py"
    script.write_text(textwrap.dedent(SUBPROCESS_BOT))
    env = os.environ | {"API_BASE_URL": fake.api_base_url, "GATEWAY_URL": fake.gateway_url,
                        "DISCORD_TOKEN": fake.token}
    with open(tmp_path / "bot.log", "wb") as log:
        process = await asyncio.create_subprocess_exec(sys.executable, str(script), env=env, stderr=log)
        try:
            await fake.wait_ready(timeout=60)
            await fake.wait_for_command("ping")
            handle = await fake.invoke_command("ping")
            assert (await handle.wait_original()).content == "pong"
        finally:
            process.terminate()
            await process.wait()
            print((tmp_path / "bot.log").read_text())
