"""The command definitions the bot registers, and registering them only when they changed.

A real discord.py client and command tree, logged in to the fake Discord over REST.
"""

from __future__ import annotations

from dataclasses import replace

import discord
import pytest
from discord import app_commands

from bot.command_errors import explain
from bot.command_sync import sync_if_changed
from bot.commands import register
from bot.config import Config, LimitsConfig
from tests.bot.in_process import logged_in
from tests.fake_discord import CommandNotPermitted


@pytest.fixture
async def setup(tmp_path):
    async with logged_in(tmp_path) as (fake, client, store):
        yield fake, client, store


def _load(tree: app_commands.CommandTree, config: Config) -> app_commands.CommandTree:
    """``tree`` (discord.py allows one per client) holding the commands ``config`` gives, as after a restart."""
    tree.clear_commands(guild=None)
    register(tree, config)
    return tree


async def test_commands_are_synced_only_when_they_change_or_when_forced(setup):
    fake, client, store = setup
    tree = app_commands.CommandTree(client)
    config = Config()
    assert await sync_if_changed(_load(tree, config), store)
    assert not await sync_if_changed(_load(tree, config), store), "a restart with the same commands must not sync"
    assert len(fake.commands.syncs) == 1

    wider = replace(config, limits=LimitsConfig(min_size=32, max_size=2048))
    assert await sync_if_changed(_load(tree, wider), store)
    assert await sync_if_changed(_load(tree, wider), store, force=True)
    assert len(fake.commands.syncs) == 3
    size = next(o for o in fake.commands.find("stylize", None)["options"] if o["name"] == "size")
    assert (size["min_value"], size["max_value"]) == (32, 2048)

    assert await sync_if_changed(_load(tree, wider), store, guild_id=fake.guild.id), "each scope has its own hash"
    assert fake.commands.syncs[-1].guild_id == fake.guild.id


async def test_every_command_is_for_servers_it_was_installed_in(setup):
    fake, client, store = setup
    await sync_if_changed(_load(app_commands.CommandTree(client), Config()), store)
    registered = fake.commands.list(None)
    assert registered
    for command in registered:
        assert command["contexts"] == [0], command["name"]
        assert command["integration_types"] == [0], command["name"]
    with pytest.raises(CommandNotPermitted, match="contexts"):
        await fake.invoke_command("nst", subcommand="presets", dm=True)


def test_size_is_declared_with_the_configured_range():
    client = discord.Client(intents=discord.Intents.none())
    tree = _load(app_commands.CommandTree(client), Config(limits=LimitsConfig(min_size=48, max_size=640)))
    [size] = [p for p in tree.get_command("stylize").parameters if p.name == "size"]
    assert (size.min_value, size.max_value, size.required) == (48, 640, False)


def test_each_kind_of_command_error_gets_its_own_message_and_bugs_get_none():
    missing = app_commands.BotMissingPermissions(["attach_files", "embed_links"])
    assert "Attach Files, Embed Links" in explain(missing) and "my role" in explain(missing)
    assert "You need the Manage Server" in explain(app_commands.MissingPermissions(["manage_guild"]))
    assert "servers only" in explain(app_commands.NoPrivateMessage())
    cooldown = app_commands.CommandOnCooldown(app_commands.Cooldown(1, 60), 42.0)
    assert "try again in 42 s" in explain(cooldown)
    assert "cannot use this command here" in explain(app_commands.CheckFailure())
    bug = app_commands.CommandInvokeError(app_commands.Command(
        name="x", description="x", callback=_noop), ZeroDivisionError())
    assert explain(bug) is None


async def _noop(interaction: discord.Interaction) -> None:
    """A callback for a command object built only to wrap an error."""
