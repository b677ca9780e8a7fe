"""/nst-settings: per-server settings (allowed channels, highest quality), for server managers.

Discord hides the command from members without Manage Server unless the server's admins
grant it to others (Server Settings -> Integrations), which is how delegation is meant to work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands

from bot.commands.contexts import GROUP_CONTEXTS, GROUP_INSTALLS
from bot.store import GuildSettings

if TYPE_CHECKING:
    from bot.app import NSTBot

# Channels /stylize can be allowed in: text, voice and stage channels (their chat), and forum and media channels,
# whose posts are threads; a thread under an allowed channel is allowed with it.
AllowableChannel = discord.TextChannel | discord.VoiceChannel | discord.StageChannel | discord.ForumChannel

settings = app_commands.Group(
    name="nst-settings",
    description="Style transfer settings for this server",
    allowed_contexts=GROUP_CONTEXTS,
    allowed_installs=GROUP_INSTALLS,
    default_permissions=discord.Permissions(manage_guild=True),
)


def describe(current: GuildSettings) -> str:
    """The settings of one server, as shown after every change."""
    channels = ", ".join(f"<#{channel}>" for channel in current.allowed_channels) or "every channel"
    quality = current.max_quality or "high (no limit)"
    buttons = "only the member who asked" if current.owner_only_buttons else "everyone"
    spoilers = "yes" if current.spoilers else "no"
    return (
        f"**Channels:** {channels}\n**Highest quality:** {quality}\n"
        f"**Re-run and remix buttons:** {buttons}\n**Results as spoilers:** {spoilers}"
    )


async def _load(interaction: discord.Interaction) -> tuple[NSTBot, GuildSettings]:
    bot: NSTBot = interaction.client  # type: ignore[assignment]
    assert interaction.guild_id is not None  # the group's contexts are servers only
    return bot, await bot.store.guild_settings(interaction.guild_id)


async def _save(interaction: discord.Interaction, bot: NSTBot, current: GuildSettings, note: str) -> None:
    await bot.store.save_guild_settings(current)
    await interaction.response.send_message(f"{note}\n{describe(current)}", ephemeral=True)


@settings.command(name="show", description="Show this server's settings")
async def show(interaction: discord.Interaction) -> None:
    _, current = await _load(interaction)
    await interaction.response.send_message(describe(current), ephemeral=True)


@settings.command(name="allow-channel", description="Allow /stylize in a channel (then only listed channels allow it)")
@app_commands.describe(channel="The channel to allow, with its threads and forum posts")
async def allow_channel(interaction: discord.Interaction, channel: AllowableChannel) -> None:
    bot, current = await _load(interaction)
    if channel.id not in current.allowed_channels:
        current.allowed_channels.append(channel.id)
    await _save(interaction, bot, current, f"/stylize is allowed in {channel.mention} and its threads.")


@settings.command(name="remove-channel", description="Stop allowing /stylize in a channel")
@app_commands.describe(channel="The channel to remove from the list")
async def remove_channel(interaction: discord.Interaction, channel: AllowableChannel) -> None:
    bot, current = await _load(interaction)
    if channel.id in current.allowed_channels:
        current.allowed_channels.remove(channel.id)
    await _save(interaction, bot, current, f"{channel.mention} is no longer on the list.")


@settings.command(name="all-channels", description="Allow /stylize in every channel again")
async def all_channels(interaction: discord.Interaction) -> None:
    bot, current = await _load(interaction)
    current.allowed_channels.clear()
    await _save(interaction, bot, current, "/stylize is allowed in every channel.")


@settings.command(name="max-quality", description="The highest quality members may ask for")
@app_commands.describe(quality="fast, balanced or high (high = no limit)")
async def max_quality(interaction: discord.Interaction, quality: Literal["fast", "balanced", "high"]) -> None:
    bot, current = await _load(interaction)
    current.max_quality = None if quality == "high" else quality
    await _save(interaction, bot, current, f"The highest quality is now **{quality}**.")


@settings.command(name="buttons", description="Who may use the re-run and remix buttons under a result")
@app_commands.describe(who="owner: only the member who asked for the image (default); everyone: any member")
async def buttons(interaction: discord.Interaction, who: Literal["owner", "everyone"]) -> None:
    bot, current = await _load(interaction)
    current.owner_only_buttons = who == "owner"
    if who == "owner":
        note = "Only the member who asked for an image can use its buttons."
    else:
        note = "Every member can use the buttons under a result."
    await _save(interaction, bot, current, note)


@settings.command(name="spoilers", description="Post finished images as spoilers (blurred until clicked)")
@app_commands.describe(enabled="true: results are hidden behind a spoiler; false: shown directly (default)")
async def spoilers(interaction: discord.Interaction, enabled: bool) -> None:
    bot, current = await _load(interaction)
    current.spoilers = enabled
    note = "Results are posted as spoilers." if enabled else "Results are shown directly."
    await _save(interaction, bot, current, note)
