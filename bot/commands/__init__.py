"""The application commands, registered on a command tree by :func:`register`."""

from __future__ import annotations

from discord import app_commands

from bot.commands.history import jobs, show
from bot.commands.menus import MENUS
from bot.commands.settings import settings
from bot.commands.status import nst
from bot.commands.stylize import stylize_command
from bot.config import Config


def register(tree: app_commands.CommandTree, config: Config) -> None:
    """Add every command of the bot to ``tree``; some are shaped by ``config`` (the size range)."""
    tree.add_command(stylize_command(config.limits))
    for subcommand in (jobs, show):
        nst.add_command(subcommand, override=True)
    tree.add_command(nst)
    tree.add_command(settings)
    for menu in MENUS:
        tree.add_command(menu)
