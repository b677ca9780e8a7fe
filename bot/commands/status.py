"""/nst status and /nst presets: what the bot is doing, and what it offers."""

from __future__ import annotations

import time
from importlib import metadata
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot.commands.contexts import GROUP_CONTEXTS, GROUP_INSTALLS
from bot.render import StatusFigures, status_message

if TYPE_CHECKING:
    from bot.app import NSTBot

nst = app_commands.Group(
    name="nst",
    description="About the style transfer bot",
    allowed_contexts=GROUP_CONTEXTS,
    allowed_installs=GROUP_INSTALLS,
)


def bot_version() -> str:
    try:
        return metadata.version("nst-bot")
    except metadata.PackageNotFoundError:
        return "unknown"


@nst.command(name="status", description="Queue, workers, memory, jobs done, uptime and version")
async def status(interaction: discord.Interaction) -> None:
    bot: NSTBot = interaction.client  # type: ignore[assignment]
    stats = bot.pool.stats()
    figures = StatusFigures(
        queue_length=stats.queue_length,
        workers_by_device=stats.workers_by_device,
        running_by_device=stats.running_by_device,
        batches_by_device=stats.batches_by_device,
        memory=stats.memory,
        completed=stats.completed,
        failed=stats.failed,
        cancelled=stats.cancelled,
        uptime_s=time.monotonic() - bot.started_at,
        version=bot_version(),
        pool_alive=stats.alive,
        shards=bot.shard_connections(),
        backend=stats.backend,
        workers_by_node=stats.workers_by_node(),
    )
    await interaction.response.send_message(embed=status_message(figures).embed, ephemeral=True)


@nst.command(name="presets", description="The paintings you can use as a style with /stylize preset:")
async def presets(interaction: discord.Interaction) -> None:
    bot: NSTBot = interaction.client  # type: ignore[assignment]
    lines = [f"`{preset.key}`: {preset.label}" for preset in bot.presets] or ["No presets are configured."]
    await interaction.response.send_message("\n".join(lines), ephemeral=True)
