"""What a user is told when a command cannot run, by cause; only real bugs are errors in the log."""

from __future__ import annotations

import discord
from discord import app_commands

from bot.formatting import format_duration

INTERNAL_ERROR = "⚠️ Something went wrong on my side. Please try again in a moment."


def _names(permissions: list[str]) -> str:
    return ", ".join(name.replace("_", " ").replace("guild", "server").title() for name in permissions)


def explain(error: app_commands.AppCommandError) -> str | None:
    """The message for a command error the user can act on; None for a bug in the bot."""
    if isinstance(error, app_commands.TransformerError):
        value = getattr(error.value, "name", error.value)
        transformer = error.transformer
        if error.type is discord.AppCommandOptionType.channel:
            kinds = [kind.name.replace("_", " ") for kind in getattr(transformer, "channel_types", [])]
            wanted = f"a {' or '.join(dict.fromkeys(kinds))} channel" if kinds else "another channel"
            return f"⚠️ #{value} cannot be used for this option: please pick {wanted}."
        return f"⚠️ `{value}` is not a valid {error.type.name.replace('_', ' ')} for this option."
    if isinstance(error, app_commands.NoPrivateMessage):
        return "⚠️ This command works in servers only, not in direct messages."
    if isinstance(error, app_commands.BotMissingPermissions):
        return (
            f"⚠️ I need the {_names(error.missing_permissions)} permission(s) in this channel to post your result. "
            "Please ask a server admin to grant them to my role."
        )
    if isinstance(error, app_commands.MissingPermissions):
        return f"⚠️ You need the {_names(error.missing_permissions)} permission(s) to do that."
    if isinstance(error, app_commands.CommandOnCooldown):
        return f"⚠️ Slow down a little: try again in {format_duration(error.retry_after)}."
    if isinstance(error, app_commands.CheckFailure):
        return "⚠️ You cannot use this command here."
    if isinstance(error, (app_commands.CommandNotFound, app_commands.CommandSignatureMismatch)):
        return "⚠️ This command has just changed. Please wait a moment for Discord to update it, then try again."
    return None
