"""/stylize: paint a picture in the style of another (an attachment or a bundled painting)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, Optional, TypeVar

import discord
from discord import app_commands

from bot.commands.contexts import GUILD_INSTALL, GUILD_ONLY_CONTEXTS, POSTING_PERMISSIONS
from bot.config import LimitsConfig
from bot.jobs import SEED_MAX
from bot.validation import StylizeOptions

Callback = TypeVar("Callback", bound=Callable[..., Any])

if TYPE_CHECKING:
    from bot.app import NSTBot


async def preset_autocomplete(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    """Presets matching what the user typed so far."""
    bot: NSTBot = interaction.client  # type: ignore[assignment]
    return [app_commands.Choice(name=preset.label[:100], value=preset.key) for preset in bot.presets.search(current)]


def stylize_command(limits: LimitsConfig) -> app_commands.Command:
    """/stylize, its ``size`` option declared with the configured range so Discord refuses others in the client."""

    @app_commands.command(
        name="stylize", description="Repaint a picture in the style of another image or a famous painting."
    )
    @GUILD_ONLY_CONTEXTS
    @GUILD_INSTALL
    @app_commands.checks.bot_has_permissions(**POSTING_PERMISSIONS)
    @app_commands.describe(
        content="The picture to repaint",
        style="The image whose style to use (or pick a preset instead)",
        preset="A bundled painting to use as the style",
        quality="fast, balanced or high: bigger and slower as you go",
        size=f"Long side of the result in pixels, {limits.min_size} to {limits.max_size} (defaults to the quality's)",
        style_strength="How strongly to apply the style: 1 is normal, 2 is twice as much",
        preserve_colors="Keep the colours of your picture, take only the brushwork",
        seed="Random seed, to repeat a result exactly",
    )
    @app_commands.autocomplete(preset=preset_autocomplete)
    @_sized(limits)
    async def stylize(
        interaction: discord.Interaction,
        content: discord.Attachment,
        style: discord.Attachment | None = None,
        preset: str | None = None,
        quality: Literal["fast", "balanced", "high"] | None = None,
        size: int | None = None,
        style_strength: app_commands.Range[float, 0.1, 10.0] | None = None,
        preserve_colors: bool | None = None,
        seed: app_commands.Range[int, 0, SEED_MAX] | None = None,
    ) -> None:
        received_at = time.time()
        # Discord allows 3 s for the first answer: acknowledge before anything else can take time.
        await interaction.response.defer(ephemeral=True, thinking=True)
        bot: NSTBot = interaction.client  # type: ignore[assignment]
        options = StylizeOptions(
            preset=preset,
            quality=quality,
            size=size,
            style_strength=style_strength,
            preserve_colors=preserve_colors,
            seed=seed,
            has_style_attachment=style is not None,
        )
        await bot.intake.stylize(interaction, options, content, style, received_at)

    return stylize


def _sized(limits: LimitsConfig) -> Callable[[Callback], Callback]:
    """Give the callback's ``size`` annotation the configured range before discord.py reads it."""

    def apply(callback: Callback) -> Callback:
        callback.__annotations__["size"] = Optional[app_commands.Range[int, limits.min_size, limits.max_size]]
        return callback

    return apply
