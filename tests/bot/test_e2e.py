"""The whole bot, end to end: ``python -m bot`` logged in to the fake Discord, the real pool and engine on CPU.

One bot process serves every test in this module (starting workers costs seconds), so
each test uses users of its own: the cooldown is long, and per-user state never leaks
between tests.  Jobs are tiny (32-40 px, a few steps); "high" quality is configured to be
long so a job can be caught running.
"""

from __future__ import annotations

import aiohttp
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from tests.badinputs import bad_input
from tests.bot.harness import (
    DONE_TITLE,
    BotProcess,
    Images,
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
from tests.fake_discord import CdnFault, CommandNotPermitted, FakeDiscord, InvalidInvocation

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]

RUNNING_TITLE = "🖌️ Stylising"
DEFAULT_SWITCHES = "\n**Re-run and remix buttons:** only the member who asked\n**Results as spoilers:** no"
CANCELLED_TITLE = "🛑 Cancelled"


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
    async with bot_fake_discord() as fake:
        config = write_config(
            folder,
            fake,
            {
                "discord": {"guild_allowlist": [fake.guild.id]},
                "limits": {"cooldown_s": 600.0, "queue_size": 1},
                "pool": {"progress_every": 1},
                "quality.balanced": {"size": 40, "steps": 30},
            },
        )
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


async def test_stylize_defers_shows_progress_and_delivers_one_final_image(world):
    fake = world.fake
    user = world.user()
    interaction = await stylize(fake, user, content=world.images.content, style=world.images.style, seed=7)
    assert interaction.ack_type == 5, "the command must be deferred"
    status = await accepted_status(interaction)
    assert not status.ephemeral
    await wait_title(fake, status, DONE_TITLE)

    titles = [version.embeds[0]["title"] for version in status.history if version.embeds]
    assert titles[0] == "⏳ Queued" and titles[-1] == DONE_TITLE
    progress = [v for v in status.history if v.embeds and v.embeds[0]["title"] == RUNNING_TITLE]
    assert any("Iteration" in v.embeds[0]["description"] for v in progress), "no progress edit with an iteration"
    assert [b["label"] for b in progress[-1].components[0]["components"]] == ["Cancel"]

    image = status.attachments[0].image()
    assert max(image.size) == 40 and status.attachments[0].filename.endswith(".png")
    text = status.text
    for word in ("content", "style", "tv", "total", "Iterations", "Time", "Device", "Weights"):
        assert word in text
    fields = {field["name"]: field["value"] for field in status.embeds[0]["fields"]}
    assert fields["Seed"] == "7" and fields["Device"] == "cpu" and fields["Size"] == f"{image.width}×{image.height}"
    assert [b["label"] for b in status.buttons] == [
        "Re-run (new seed)", "More style", "Less style", "Preserve colours", "Adjust…", "Higher quality", "Delete"
    ]
    assert finals_for(fake, job_prefix(status)) == [status]
    assert interaction.rejections == []


async def test_presets_autocomplete_and_run(world):
    fake = world.fake
    user = world.user()
    choices = await fake.autocomplete(
        "stylize", {"content": world.images.content, "preset": "scre"}, focused="preset", user=user
    )
    assert choices == [{"name": "The Scream — Edvard Munch, 1893", "value": "the_scream"}]
    interaction = await stylize(fake, user, content=world.images.content, preset="the_scream", quality="fast")
    status = await accepted_status(interaction)
    await wait_title(fake, status, DONE_TITLE)
    assert "The Scream" in status.text
    assert max(status.attachments[0].image().size) == 32


async def test_each_bad_request_gets_its_own_ephemeral_message(world):
    fake = world.fake
    png = world.images.content
    truncated = bad_input("png_truncated_half")
    html = bad_input("html_as_png")
    cases = [
        ({"style": fake.add_attachment(b"hello", "notes.txt", "text/plain")}, "is of type `text/plain`, not an image"),
        ({"style": fake.add_attachment(b"x" * 10, "huge.png", "image/png", declared_size=5_000_000)}, "is too large"),
        ({"style": fake.add_attachment(b"x" * 10, "wide.png", "image/png", width=5000, height=5000)}, "megapixels"),
        ({"style": fake.add_attachment(truncated.data, "cut.png", "image/png")}, "truncated or corrupt"),
        ({"style": fake.add_attachment(html.data, "page.png", "image/png")}, "web page (HTML)"),
        (
            {"style": fake.add_attachment(b"x" * 10, "gone.png", "image/png", fault=CdnFault.status_code(404))},
            "HTTP 404",
        ),
        (
            {"style": fake.add_attachment(b"x" * 10, "far.png", "image/png", url="https://example.com/a.png")},
            "not hosted on Discord's CDN",
        ),
        (
            {"style": fake.add_attachment(truncated.data, "liar.png", "image/png", declared_size=10)},
            "larger than Discord said",
        ),
        (
            {"style": fake.add_attachment(b"x" * 10, "slow.png", "image/png", fault=CdnFault.hang(30))},
            "took longer than 3 s",
        ),
        ({}, "Attach a style image, or pick one of the preset paintings"),
        ({"preset": "starry_night", "style": world.images.style}, "either a style image or a preset"),
        ({"preset": "mona_lisa"}, "no preset called `mona_lisa`"),
    ]
    for options, words in cases:
        # A request refused after its download costs a cooldown: each case comes from its own user.
        interaction = await stylize(fake, world.user(), content=png, **options)
        assert interaction.ack_type == 5
        message = await refusal(interaction)
        assert words in message, f"{options}: {message}"
    user = world.user()
    with pytest.raises(InvalidInvocation, match="size"):
        # The size range is the configured one, so Discord's client refuses the value before sending it.
        await fake.invoke_command("stylize", {"content": png, "style": world.images.style, "size": 4000}, user=user)
    sneaked = await fake.invoke_command(
        "stylize", {"content": png, "style": world.images.style, "size": 4000}, user=user, validate=False
    )
    assert "size must be between 32 and 1024" in await refusal(sneaked)


async def test_cancel_is_for_the_requester_or_a_moderator(world):
    fake = world.fake
    requester, stranger = world.user(), world.user()
    moderator = world.user(permissions=["manage_messages"])
    interaction = await stylize(fake, requester, content=world.images.content, style=world.images.style, quality="high")
    status = await accepted_status(interaction)
    await fake.wait_for(lambda: "Iteration" in status.text, 60, "a progress edit")

    press = await fake.press_button(status, label="Cancel", user=stranger)
    answer = await press.wait_original()
    assert answer.ephemeral and "Only" in answer.content and "can cancel it" in answer.content
    assert title(status) == RUNNING_TITLE

    press = await fake.press_button(status, label="Cancel", user=requester)
    await press.wait_acknowledged()
    await wait_title(fake, status, CANCELLED_TITLE)
    assert "Cancelled by its requester" in status.text and status.buttons == []
    assert finals_for(fake, job_prefix(status)) == [status]

    interaction = await stylize(
        fake, world.user(), content=world.images.content, style=world.images.style, quality="high"
    )
    status = await accepted_status(interaction)
    await fake.wait_for(lambda: title(status) == RUNNING_TITLE, 60, "the job to start")
    await (await fake.press_button(status, label="Cancel", user=moderator)).wait_acknowledged()
    await wait_title(fake, status, CANCELLED_TITLE)
    assert f"Cancelled by <@{moderator.id}>" in status.text


async def test_cooldown_and_full_queue_are_refused_with_a_time(world):
    fake = world.fake
    user = world.user()
    first = await stylize(fake, user, content=world.images.content, preset="starry_night", quality="fast")
    await wait_title(fake, await accepted_status(first), DONE_TITLE)
    again = await stylize(fake, user, content=world.images.content, preset="starry_night", quality="fast")
    assert "Slow down a little: you can start another job in" in await refusal(again)

    runner, waiter, late = world.user(), world.user(), world.user()
    running = await accepted_status(
        await stylize(fake, runner, content=world.images.content, preset="shipwreck", quality="high")
    )
    await fake.wait_for(lambda: title(running) == RUNNING_TITLE, 60, "the first job to run")
    queued = await accepted_status(
        await stylize(fake, waiter, content=world.images.content, preset="shipwreck", quality="high")
    )
    assert "Next in line" in queued.text
    full = await stylize(fake, late, content=world.images.content, preset="shipwreck", quality="fast")
    message = await refusal(full)
    assert "The queue is full. Please try again in about" in message

    await (await fake.press_button(queued, label="Cancel", user=waiter)).wait_acknowledged()
    await (await fake.press_button(running, label="Cancel", user=runner)).wait_acknowledged()
    await wait_title(fake, queued, CANCELLED_TITLE)
    await wait_title(fake, running, CANCELLED_TITLE)


async def test_a_job_outliving_its_token_keeps_its_status_alive_and_pings_its_requester(world):
    fake = world.fake
    blocker, user = world.user(), world.user()
    running = await accepted_status(
        await stylize(fake, blocker, content=world.images.content, preset="the_scream", quality="high")
    )
    await fake.wait_for(lambda: title(running) == RUNNING_TITLE, 60, "the blocking job to run")
    waiting = await accepted_status(
        await stylize(fake, user, content=world.images.content, style=world.images.style, quality="fast")
    )
    fake.token_ttl = 0.0
    try:
        await (await fake.press_button(running, label="Cancel", user=blocker)).wait_acknowledged()
        await wait_title(fake, waiting, DONE_TITLE)
        ping = await fake.wait_for_message(lambda m: m.kind == "channel" and m.mentions_user(user), timeout=60)
    finally:
        fake.token_ttl = 15 * 60.0
    titles = [version.embeds[0]["title"] for version in waiting.history if version.embeds]
    assert RUNNING_TITLE in titles, "the status kept moving after the interaction token died"
    edits = fake.requests_to("PATCH", rf"^/channels/\d+/messages/{waiting.id}$")
    assert edits and all(edit.status == 200 for edit in edits), "edited with the bot's own token"
    assert max(waiting.attachments[0].image().size) == 32, "the fast preset's image"
    assert finals_for(fake, job_prefix(waiting)) == [waiting]
    assert ping.mentions == [user.id] and ping.embeds == [] and "your image is ready" in ping.content
    assert ping.message_reference["message_id"] == str(waiting.id)


async def scrape(world: World) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The bot's /metrics: each sample's value by its name and labels."""
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{world.bot.http_port}/metrics") as response:
            assert response.status == 200
            text = await response.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def growth(before: dict, after: dict, name: str, **labels: str) -> float:
    """How much one series grew between two scrapes (a series that did not exist yet counts as 0)."""
    key = (name, tuple(sorted(labels.items())))
    assert key in after, f"{name}{labels} is not exported"
    return after[key] - before.get(key, 0.0)


async def test_status_settings_health_and_metrics(world):
    fake = world.fake
    metrics_before = await scrape(world)
    status = await fake.invoke_command("nst", subcommand="status", user=world.user())
    answer = await status.wait_original()
    fields = {field["name"]: field["value"] for field in answer.embeds[0]["fields"]}
    assert answer.ephemeral and fields["Workers"].startswith("cpu: 1")
    assert fields["Backend"] == "local worker processes"
    assert {"Queue", "Memory", "Jobs", "Uptime", "Version"} <= set(fields)

    with pytest.raises(CommandNotPermitted):
        await fake.invoke_command("nst-settings", subcommand="show", user=world.user())
    admin = world.user(permissions=["manage_guild"])
    elsewhere = fake.add_channel("art")
    allow = await fake.invoke_command("nst-settings", {"channel": elsewhere}, subcommand="allow-channel", user=admin)
    assert f"<#{elsewhere.id}>" in (await allow.wait_original()).content
    refused = await stylize(fake, world.user(), content=world.images.content, preset="starry_night")
    assert "not enabled in this channel" in await refusal(refused)
    await (await fake.invoke_command("nst-settings", subcommand="all-channels", user=admin)).wait_original()

    other_server = fake.add_guild("Not Allowed")
    outsider = await fake.invoke_command(
        "stylize", {"content": world.images.content, "preset": "starry_night"}, user=world.user(), guild=other_server
    )
    assert "not enabled for this server" in await refusal(outsider)

    limit = await fake.invoke_command("nst-settings", {"quality": "fast"}, subcommand="max-quality", user=admin)
    await limit.wait_original()
    capped = await accepted_status(
        await stylize(fake, world.user(), content=world.images.content, preset="starry_night", quality="high")
    )
    await wait_title(fake, capped, DONE_TITLE)
    assert "up to **fast**" in capped.history[0].embeds[0]["description"]
    assert max(capped.attachments[0].image().size) == 32
    await (
        await fake.invoke_command("nst-settings", {"quality": "high"}, subcommand="max-quality", user=admin)
    ).wait_original()

    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{world.bot.http_port}/healthz") as response:
            assert response.status == 200
            assert await response.json() == {"gateway": True, "pool": True}
    # What this test did, and nothing else (the other tests use other users and are over by now).
    metrics = await scrape(world)
    assert growth(metrics_before, metrics, "nst_jobs_total", outcome="finished") == 1
    assert growth(metrics_before, metrics, "nst_job_duration_seconds_count") == 1
    assert growth(metrics_before, metrics, "nst_refusals_total", reason="channel") == 1
    assert growth(metrics_before, metrics, "nst_refusals_total", reason="guild") == 1
    assert metrics[("nst_queue_length", ())] == 0
    assert metrics[("nst_workers", (("device", "cpu"), ("node", "local")))] == 1
    assert metrics[("nst_pool_alive", ())] == 1
    assert metrics[("nst_pool_backend", (("backend", "local"),))] == 1
    assert metrics[("nst_device_memory_bytes", (("device", "cpu"), ("kind", "total"), ("node", "local")))] > 0


async def test_presets_and_the_settings_shown_listed_and_removed(world):
    fake = world.fake
    presets = await (await fake.invoke_command("nst", subcommand="presets", user=world.user())).wait_original()
    assert presets.ephemeral
    for line in ("`starry_night`: The Starry Night — Vincent van Gogh", "`the_scream`: The Scream — Edvard Munch",
                 "`shipwreck`: The Shipwreck — J. M. W. Turner"):
        assert line in presets.content, presets.content

    admin = world.user(permissions=["manage_guild"])

    async def settings(subcommand: str, options: dict | None = None) -> str:
        invoked = await fake.invoke_command("nst-settings", options, subcommand=subcommand, user=admin)
        answer = await invoked.wait_original()
        assert answer.ephemeral
        return answer.content

    assert await settings("show") == "**Channels:** every channel\n**Highest quality:** high (no limit)" + DEFAULT_SWITCHES
    kept, dropped = fake.add_channel("kept"), fake.add_channel("dropped")
    await settings("allow-channel", {"channel": kept})
    await settings("allow-channel", {"channel": dropped})
    assert f"**Channels:** <#{kept.id}>, <#{dropped.id}>" in await settings("show")
    removed = await settings("remove-channel", {"channel": dropped})
    assert f"<#{dropped.id}> is no longer on the list." in removed
    assert await settings("show") == f"**Channels:** <#{kept.id}>\n**Highest quality:** high (no limit)" + DEFAULT_SWITCHES
    try:
        there = await fake.invoke_command(
            "stylize", {"content": world.images.content, "preset": "starry_night"}, user=world.user(), channel=dropped
        )
        assert f"not enabled in this channel. Try <#{kept.id}>." in await refusal(there)
    finally:
        await settings("all-channels")
    assert await settings("show") == "**Channels:** every channel\n**Highest quality:** high (no limit)" + DEFAULT_SWITCHES
