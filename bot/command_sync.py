"""Registering the commands with Discord only when they changed.

Discord limits how many commands an application may create a day; a bot in a crash loop that
synced at every start would run into it.  The store keeps a hash of what was last synced per
scope (global or one server); a start with the same commands skips the sync.
"""

from __future__ import annotations

import hashlib
import json
import logging

import discord
from discord import app_commands

from bot.store import JobStore

log = logging.getLogger("bot.commands")


def commands_hash(tree: app_commands.CommandTree, guild: discord.abc.Snowflake | None) -> str:
    """A hash of every command definition the tree would send for ``guild`` (None: global)."""
    definitions = sorted(
        (command.to_dict(tree) for command in tree.get_commands(guild=guild)),
        key=lambda definition: (definition.get("type", 1), definition["name"]),
    )
    return hashlib.sha256(json.dumps(definitions, sort_keys=True, default=str).encode()).hexdigest()


async def sync_if_changed(
    tree: app_commands.CommandTree, store: JobStore, *, guild_id: int = 0, force: bool = False
) -> bool:
    """Sync the tree's commands (globally, or to ``guild_id``) unless they match the last sync; True if synced."""
    guild = discord.Object(guild_id) if guild_id else None
    if guild is not None:
        tree.copy_global_to(guild=guild)
    scope = f"commands:guild:{guild_id}" if guild else "commands:global"
    digest = commands_hash(tree, guild)
    if not force and await store.get_meta(scope) == digest:
        log.info("commands unchanged since the last sync; not syncing (run with --sync to force)")
        return False
    synced = await tree.sync(guild=guild)
    await store.set_meta(scope, digest)
    where = f"to the development server {guild_id}" if guild else "globally (Discord may take a while to show changes)"
    log.info("synced %d commands %s", len(synced), where)
    return True
