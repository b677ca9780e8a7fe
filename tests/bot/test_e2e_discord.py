"""The bot's Discord surface end to end: channels and threads, commands, menus, buttons and modals.

``python -m bot`` logged in to the fake Discord, with the real pool and engine on CPU; one bot
process serves the module, and each test uses users of its own.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
import pytest_asyncio

from tests.bot.harness import (
    DONE_TITLE,
    BotProcess,
    Images,
    accepted_status,
    add_images,
    bot_fake_discord,
    job_prefix,
    title,
    refusal,
    wait_title,
    write_config,
)
from tests.fake_discord import FakeDiscord
from tests.fake_discord.world import CATEGORY_CHANNEL, FORUM_CHANNEL, VOICE_CHANNEL

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]


class World:
    def __init__(self, fake: FakeDiscord, bot: BotProcess, images: Images, folder) -> None:
        self.fake = fake
        self.bot = bot
        self.images = images
        self.folder = folder
        self._users = 0

    def user(self, permissions: object = None):
        self._users += 1
        return self.fake.add_user(f"user{self._users}", permissions=permissions)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world(tmp_path_factory, images_dir):
    folder = tmp_path_factory.mktemp("bot")
    async with bot_fake_discord() as fake:
        config = write_config(folder, fake, {"limits": {"max_jobs_per_user": 3}})
        bot = await BotProcess.start(config, fake)
        try:
            await bot.wait_ready(fake)
            await fake.wait_for_command("stylize")
            yield World(fake, bot, add_images(fake, images_dir), folder)
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


async def test_missing_bot_permissions_and_bad_option_values_get_their_own_message(world):
    fake = world.fake
    strict = fake.add_guild("No uploads")
    for role in (strict.everyone, *strict.roles.values()):
        role.permissions &= ~(1 << 15)  # Attach Files
    interaction = await fake.invoke_command(
        "stylize", {"content": world.images.content, "preset": "starry_night"}, user=world.user(), guild=strict
    )
    answer = await interaction.wait_original()
    assert answer.ephemeral and "I need the Attach Files permission(s) in this channel" in answer.content
    assert interaction.followups == []

    category = fake.add_channel("Pictures", type=CATEGORY_CHANNEL)
    handle = await fake.invoke_command(
        "nst-settings", {"channel": category}, subcommand="allow-channel", user=fake.owner, validate=False
    )
    answer = await handle.wait_original()
    assert answer.ephemeral and "#Pictures cannot be used for this option" in answer.content
    assert "forum" in answer.content
    assert "unexpected error" not in world.bot.log()


async def test_a_restart_does_not_sync_unchanged_commands_and_sync_forces_it(tmp_path, images_dir):
    async with FakeDiscord() as fake:
        config = write_config(tmp_path, fake)
        for number, args in enumerate(((), (), ("--sync",)), start=1):
            bot = await BotProcess.start(config, fake, log_name=f"bot{number}.log", args=args)
            try:
                await bot.wait_ready(fake, identifies=number)
                await fake.wait_for_command("stylize")
                assert await bot.terminate() == 0, bot.log()[-3000:]
            finally:
                await bot.kill()
        assert "commands unchanged since the last sync" in (tmp_path / "bot2.log").read_text()
        assert len(fake.commands.syncs) == 2, "the first start and --sync register the commands; the second start not"


async def test_a_sharded_bot_runs_a_connection_per_shard_and_reports_each(tmp_path, images_dir):
    async with FakeDiscord() as fake:
        while len({(guild_id >> 22) % 2 for guild_id in fake.world.guilds}) < 2:  # a server on each shard
            await asyncio.sleep(0.002)  # the shard comes from the id's millisecond timestamp
            fake.add_guild("Another server")
        config = write_config(tmp_path, fake, {"discord": {"shards": 2}})
        bot = await BotProcess.start(config, fake)
        try:
            await bot.wait_ready(fake)
            await fake.wait_for(lambda: fake.gateway.connected and len(fake.gateway.shard_sessions) == 2, 60)
            assert sorted(s.shard for s in fake.gateway.shard_sessions.values()) == [[0, 2], [1, 2]]
            await fake.wait_for_command("stylize")
            images = add_images(fake, images_dir)
            one_per_shard = {(guild.id >> 22) % 2: guild for guild in fake.world.guilds.values()}
            for guild in one_per_shard.values():
                interaction = await fake.invoke_command(
                    "stylize", {"content": images.content, "preset": "starry_night", "quality": "fast"},
                    user=fake.add_user(f"member{guild.id}"), guild=guild,
                )
                await wait_title(fake, await accepted_status(interaction), DONE_TITLE)
            status = await fake.invoke_command("nst", subcommand="status")
            fields = {f["name"]: f["value"] for f in (await status.wait_original()).embeds[0]["fields"]}
            assert fields["Gateway"] == "shard 0: connected\nshard 1: connected"
            assert await _healthz_once_ready(bot) == {"gateway": True, "shard_0": True, "shard_1": True, "pool": True}
            assert await bot.terminate() == 0, bot.log()[-3000:]
        finally:
            await bot.kill()
        assert "Traceback" not in bot.log(), bot.log()[-5000:]


async def _healthz_once_ready(bot: BotProcess, attempts: int = 60) -> dict:
    """/healthz once it answers 200: discord.py calls a sharded client ready a moment after the last shard's
    guilds arrived."""
    async with aiohttp.ClientSession() as session:
        for _ in range(attempts):
            async with session.get(f"http://127.0.0.1:{bot.http_port}/healthz") as response:
                checks = await response.json()
                if response.status == 200:
                    return checks
            await asyncio.sleep(0.5)
    raise AssertionError(f"/healthz never became healthy: {checks}")


MENUS = ("Use as style", "Stylize with my style", "Stylize with a preset…")


async def _accepted_after_pick(interaction):
    """The public status message of a job started from a picker (whose message turns into the confirmation)."""
    confirmation = await interaction.wait_original(lambda m: "is queued" in m.content or "⚠️" in m.content, 30)
    assert "is queued" in confirmation.content, confirmation.content
    return await interaction.wait_followup(timeout=30)


async def _picker(interaction) -> object:
    """The private picker a menu command answered with."""
    picker = await interaction.wait_original(lambda m: m.selects)
    assert picker.ephemeral
    return picker


async def test_right_click_menus_are_message_commands_for_servers(world):
    for name in MENUS:
        command = world.fake.commands.find(name, None, command_type=3)
        assert command is not None, f"{name} is not registered as a message command"
        assert command["contexts"] == [0] and command["integration_types"] == [0]


async def test_use_as_style_then_stylize_with_my_style_on_a_message_with_one_image(world):
    fake = world.fake
    user = world.user()
    painting = fake.post_message("my painting", files=[world.images.style], user=fake.owner)
    saved = await fake.invoke_message_command("Use as style", painting, user=user)
    confirmation = await saved.wait_original()
    assert confirmation.ephemeral and "starry_night.jpg` is now your style" in confirmation.content
    assert saved.followups == [], "saving a style posts nothing public"

    photo = fake.post_message("holiday", files=[world.images.content], user=fake.owner)
    interaction = await fake.invoke_message_command("Stylize with my style", photo, user=user)
    await interaction.wait_acknowledged()
    assert interaction.ack_type == 5
    status = await accepted_status(interaction)
    await wait_title(fake, status, DONE_TITLE)
    assert "style: your image" in status.text


async def test_several_images_ask_which_and_no_saved_style_offers_presets(world):
    fake = world.fake
    user = world.user()
    first = fake.add_attachment(fake.cdn.get(world.images.style).data, "first.jpg")
    second = fake.add_attachment(fake.cdn.get(world.images.content).data, "second.png")
    post = fake.post_message("two pictures", files=[first, second], user=fake.owner)

    interaction = await fake.invoke_message_command("Stylize with my style", post, user=user)
    picker = await _picker(interaction)
    assert "no saved style yet" in picker.content and "2 images" in picker.content
    assert [s["custom_id"] for s in picker.selects] == ["nst-pick:image", "nst-pick:preset"]
    await (await fake.select(picker, ["1"], "nst-pick:image", user=user)).wait_acknowledged()
    assert fake.cdn.hits(second) == 0, "nothing starts before every choice is made"
    chosen = await fake.select(picker, ["the_scream"], "nst-pick:preset", user=user)
    status = await _accepted_after_pick(chosen)
    await wait_title(fake, status, DONE_TITLE)
    assert "The Scream" in status.text
    assert (fake.cdn.hits(second), fake.cdn.hits(first)) == (1, 0), "the picked image is the one repainted"

    single = fake.post_message("one", files=[fake.add_attachment(fake.cdn.get(second).data, "one.png")])
    interaction = await fake.invoke_message_command("Stylize with a preset…", single, user=world.user())
    picker = await _picker(interaction)
    assert [s["custom_id"] for s in picker.selects] == ["nst-pick:preset"]

    keep = await fake.invoke_message_command("Use as style", post, user=user)
    picker = await _picker(keep)
    saved = await fake.select(picker, ["1"], user=user)
    assert "`second.png` is now your style" in (await saved.wait_original(lambda m: "style" in m.content)).content

    nothing = fake.post_message("no pictures here")
    answer = await (await fake.invoke_message_command("Use as style", nothing, user=user)).wait_original()
    assert answer.ephemeral and "has no image" in answer.content


async def _finished(world: World, user, **options) -> object:
    options = {"content": world.images.content, "preset": "starry_night", "quality": "fast", **options}
    status = await accepted_status(await world.fake.invoke_command("stylize", options, user=user))
    await wait_title(world.fake, status, DONE_TITLE)
    return status


def _stored_result(world: World, status) -> list:
    return list((world.folder / "data").rglob(f"{job_prefix(status)}*.png"))


async def test_delete_is_for_the_requester_and_moderators(world):
    fake = world.fake
    owner, stranger = world.user(), world.user()
    moderator = world.user(permissions=["manage_messages"])
    mine = await _finished(world, owner)
    assert _stored_result(world, mine), "the finished image is stored (for the buttons)"

    refused = await fake.press_button(mine, label="Delete", user=stranger)
    answer = await refused.wait_original()
    assert answer.ephemeral and "or a moderator can delete this result" in answer.content
    assert not mine.deleted

    deleted = await fake.press_button(mine, label="Delete", user=owner)
    assert "Deleted" in (await deleted.wait_original(lambda m: not m.loading)).content
    assert mine.deleted and _stored_result(world, mine) == []

    theirs = await _finished(world, world.user())
    await (await fake.press_button(theirs, label="Delete", user=moderator)).wait_original(lambda m: not m.loading)
    assert theirs.deleted and _stored_result(world, theirs) == []


async def test_results_name_their_requester_buttons_are_the_owners_and_spoilers_are_a_switch(world):
    fake = world.fake
    owner, other = world.user(), world.user()
    status = await _finished(world, owner)
    assert f"Requested by <@{owner.id}>" in status.text
    assert all(f"Requested by <@{owner.id}>" in v.embeds[0]["description"] for v in status.history if v.embeds)

    refused = await fake.press_button(status, label="Re-run (new seed)", user=other)
    assert f"only <@{owner.id}>, who asked for this image, can use its buttons" in await refusal(refused)
    try:
        assert "everyone" in await _settings(world, "buttons", who="everyone")
        again = await fake.press_button(status, label="Re-run (new seed)", user=other)
        await wait_title(fake, await accepted_status(again), DONE_TITLE)

        assert "spoilers" in await _settings(world, "spoilers", enabled=True)
        hidden = await _finished(world, world.user())
        assert hidden.attachments[0].filename.startswith("SPOILER_")
        assert "image" not in hidden.embeds[0], "an embed's image would show through the spoiler"
    finally:
        await _settings(world, "buttons", who="owner")
        await _settings(world, "spoilers", enabled=False)


async def test_nst_jobs_lists_your_jobs_with_cancel_and_nst_show_posts_your_result_again(world):
    fake = world.fake
    user, other = world.user(), world.user()
    done = await _finished(world, user)
    running = await accepted_status(await fake.invoke_command(
        "stylize", {"content": world.images.content, "preset": "shipwreck", "quality": "high"}, user=user
    ))
    await fake.wait_for(lambda: title(running) == "🖌️ Stylising", 60, "the long job to run")

    listing = await (await fake.invoke_command("nst", subcommand="jobs", user=user)).wait_original()
    assert listing.ephemeral
    fields = {f["name"]: f["value"] for f in listing.embeds[0]["fields"]}
    assert f"`{job_prefix(running)}`" in fields["Queued and running"] and "running" in fields["Queued and running"]
    link = f"https://discord.com/channels/{fake.guild.id}/{fake.channel.id}/{done.id}"
    assert f"`{job_prefix(done)}`" in fields["Recent results"] and link in fields["Recent results"]
    assert [b["label"] for b in listing.buttons] == [f"Cancel {job_prefix(running)}"]
    await (await fake.press_button(listing, label=f"Cancel {job_prefix(running)}", user=user)).wait_acknowledged()
    await wait_title(fake, running, "🛑 Cancelled")

    choices = await fake.autocomplete("nst", {"id": ""}, focused="id", subcommand="show", user=user)
    assert [c["value"] for c in choices] == [job_prefix(done)]
    shown = await fake.invoke_command("nst", {"id": job_prefix(done)}, subcommand="show", user=user)
    again = await shown.wait_original(lambda m: not m.loading and m.embeds)
    assert not again.ephemeral and title(again) == DONE_TITLE and again.attachments
    assert again.attachments[0].data == done.attachments[0].data

    theirs = await fake.invoke_command("nst", {"id": job_prefix(done)}, subcommand="show", user=other)
    answer = await theirs.wait_original()
    assert answer.ephemeral and "is not one of your jobs" in answer.content


async def test_adjust_opens_a_prefilled_dialog_whose_values_start_a_new_job(world):
    fake = world.fake
    user = world.user()
    done = await _finished(world, user, seed=7)

    press = await fake.press_button(done, label="Adjust…", user=user)
    await press.wait_acknowledged()
    assert press.ack_type == 9, "the dialog must be the first answer"
    inputs = {c["custom_id"]: c for row in press.modal["components"] for c in row["components"]}
    assert (inputs["strength"]["value"], inputs["seed"]["value"], inputs["size"]["value"]) == ("1", "7", "32")

    bad = await fake.submit_modal(press, {"size": "5000"})
    answer = await bad.wait_original()
    assert answer.ephemeral and "The size must be from 32 to 1024 pixels" in answer.content

    again = await fake.press_button(done, label="Adjust…", user=user)
    await again.wait_acknowledged()
    submitted = await fake.submit_modal(again, {"strength": "3", "seed": "8", "size": "40"})
    status = await accepted_status(submitted)
    await wait_title(fake, status, DONE_TITLE)
    assert "40 px" in status.text and "strength ×3" in status.text and "seed 8" in status.text
    assert max(status.attachments[0].image().size) == 40

    stranger = await fake.press_button(done, label="Adjust…", user=world.user())
    answer = await stranger.wait_original()
    assert answer.ephemeral and "can use its buttons" in answer.content and stranger.modal is None


async def test_higher_quality_runs_the_next_level_up_to_the_servers_ceiling(world):
    fake = world.fake
    user = world.user()
    done = await _finished(world, user)
    higher = await accepted_status(await fake.press_button(done, label="Higher quality", user=user))
    await wait_title(fake, higher, DONE_TITLE)
    assert "balanced · 40 px" in higher.text
    try:
        await _settings(world, "max-quality", quality="balanced")
        refused = await fake.press_button(higher, label="Higher quality", user=user)
        assert "already at the highest quality this server allows" in await refusal(refused)
    finally:
        await _settings(world, "max-quality", quality="high")


async def test_with_a_short_token_life_the_status_keeps_moving_on_the_bots_own_token(tmp_path, images_dir):
    async with bot_fake_discord() as fake:
        config = write_config(tmp_path, fake, {"delivery": {"token_ttl_s": 2.0, "token_margin_s": 0.0}})
        bot = await BotProcess.start(config, fake)
        try:
            await bot.wait_ready(fake)
            await fake.wait_for_command("stylize")
            images = add_images(fake, images_dir)
            user = fake.add_user("patient")
            status = await accepted_status(await fake.invoke_command(
                "stylize", {"content": images.content, "preset": "shipwreck", "quality": "high"}, user=user
            ))
            by_bot = rf"^/channels/\d+/messages/{status.id}$"
            await fake.wait_for(lambda: len(fake.requests_to("PATCH", by_bot)) >= 2, 60, "edits with the bot's token")
            iterations = [v.embeds[0]["description"] for v in status.history if v.embeds]
            await fake.wait_for(lambda: status.embeds[0]["description"] not in iterations, 60, "a later progress edit")
            await (await fake.press_button(status, label="Cancel", user=user)).wait_acknowledged()
            await wait_title(fake, status, "🛑 Cancelled")
            late_webhook_edits = [
                r for r in fake.requests_to("PATCH", rf"^/webhooks/.*/messages/{status.id}$")
                if r.started_at > fake.requests_to("PATCH", by_bot)[0].started_at
            ]
            assert late_webhook_edits == [], "once the token is past its life, only the bot's token is used"
            assert all(r.status == 200 for r in fake.requests_to("PATCH", by_bot))
            assert await bot.terminate() == 0, bot.log()[-3000:]
        finally:
            await bot.kill()
        assert "Traceback" not in bot.log(), bot.log()[-5000:]
