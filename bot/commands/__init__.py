"""The application commands, registered on a command tree by :func:`register`."""

from __future__ import annotations

from discord import app_commands

from bot.commands.settings import settings
from bot.commands.status import nst
from bot.commands.stylize import stylize


def register(tree: app_commands.CommandTree) -> None:
    """Add every command of the bot to ``tree``."""
    tree.add_command(stylize)
    tree.add_command(nst)
    tree.add_command(settings)
