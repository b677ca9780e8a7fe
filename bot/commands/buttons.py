"""What the buttons under a job do: cancel it, or start a new job from its images.

Buttons outlive the process that posted them; everything they need comes from the
durable store by job id (see :mod:`bot.views`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import discord

from bot.intake import Refusal
from bot.jobs import STYLE_STRENGTH_RANGE, JobParams, JobRecord, new_seed
from bot.remix import adjusted, higher_quality
from bot.runner import SourceMissing
from bot.store import GuildSettings
from bot.validation import Rejection, cap_to_server

# How long an opened Adjust dialog can still be submitted.
ADJUST_TIMEOUT_S = 900.0

if TYPE_CHECKING:
    from bot.app import NSTBot


async def handle_job_button(bot: NSTBot, action: str, job_id: str, interaction: discord.Interaction) -> None:
    """Dispatch a press of one of our buttons."""
    if action == "cancel":
        await _cancel(bot, job_id, interaction)
    elif action == "delete":
        await _delete(bot, job_id, interaction)
    elif action == "adjust":
        await _open_adjust(bot, job_id, interaction)
    else:
        await _derive(bot, action, job_id, interaction)


async def _delete(bot: NSTBot, job_id: str, interaction: discord.Interaction) -> None:
    """Delete a result message and the job's stored images: for the requester and members with Manage Messages."""
    record = await bot.store.get(job_id)
    owner = record.user_id if record is not None else None
    if owner != interaction.user.id and not interaction.permissions.manage_messages:
        who = f"<@{owner}>, who asked for it," if owner else "the member who asked for it"
        await interaction.response.send_message(
            f"Only {who} or a moderator can delete this result.",
            ephemeral=True,
            allowed_mentions=discord.AllowedMentions.none(),
        )
        return
    await interaction.response.defer(ephemeral=True, thinking=True)
    if interaction.message is not None:
        try:
            await interaction.message.delete()
        except discord.NotFound:
            pass
    if record is not None:
        await bot.store.delete(job_id)
        await asyncio.to_thread(bot.blobs.delete_results, [job_id])
        # Its source images go at the next clean-up, unless another job or a saved style still uses them.
    await interaction.edit_original_response(
        content="🗑️ Deleted the result and its stored image; its source images go at the next clean-up."
    )


async def _cancel(bot: NSTBot, job_id: str, interaction: discord.Interaction) -> None:
    active = bot.runner.active(job_id)
    record = active.record if active is not None else await bot.store.get(job_id)
    if record is None:
        await interaction.response.send_message("This job no longer exists.", ephemeral=True)
        return
    is_requester = interaction.user.id == record.user_id
    if not is_requester and not interaction.permissions.manage_messages:
        await interaction.response.send_message(
            f"Only <@{record.user_id}>, who asked for this job, or a moderator can cancel it.",
            ephemeral=True,
            allowed_mentions=discord.AllowedMentions.none(),
        )
        return
    reason = "Cancelled by its requester." if is_requester else f"Cancelled by <@{interaction.user.id}>."
    if not bot.runner.cancel(job_id, reason):
        await interaction.response.send_message("This job has already finished.", ephemeral=True)
        return
    # The runner edits the message to "Cancelled" as soon as the pool confirms.
    await interaction.response.defer()


def derive_params(params: JobParams, action: str) -> JobParams:
    """The parameters of the job a button starts from ``params``; raises Refusal if nothing would change."""
    low, high = STYLE_STRENGTH_RANGE
    if action == "rerun":
        return params.with_changes(seed=new_seed())
    if action == "more":
        if params.style_strength >= high:
            raise Refusal(f"The style is already at its strongest (×{high:g}).", "options")
        return params.with_changes(style_strength=min(high, params.style_strength * 2))
    if action == "less":
        if params.style_strength <= low:
            raise Refusal(f"The style is already at its weakest (×{low:g}).", "options")
        return params.with_changes(style_strength=max(low, params.style_strength / 2))
    if action == "colors":
        return params.with_changes(preserve_colors=not params.preserve_colors)
    raise ValueError(f"unknown button action {action!r}")


async def _derive(bot: NSTBot, action: str, job_id: str, interaction: discord.Interaction) -> None:
    def change(params: JobParams, settings: GuildSettings | None) -> JobParams:
        if action == "higher":
            try:
                return higher_quality(params, bot.config, settings.max_quality if settings else None)
            except Rejection as exc:
                raise Refusal(str(exc), "options") from None
        return derive_params(params, action)

    await start_from(bot, job_id, interaction, change)


def _owner_only(source: JobRecord, settings: GuildSettings | None, user_id: int) -> Refusal | None:
    """The refusal for a member who is not the requester, when the server keeps the buttons to requesters."""
    if settings is not None and settings.owner_only_buttons and user_id != source.user_id:
        return Refusal(
            f"On this server only <@{source.user_id}>, who asked for this image, can use its buttons. "
            "Use /stylize or the right-click menus (Apps) to make your own.",
            "owner_only",
        )
    return None


async def start_from(
    bot: NSTBot,
    job_id: str,
    interaction: discord.Interaction,
    change: Callable[[JobParams, GuildSettings | None], JobParams],
) -> None:
    """Start a new job from job ``job_id``'s images with ``change``d parameters (a button or the Adjust dialog)."""
    received_at = time.time()
    await interaction.response.defer(ephemeral=True, thinking=True)
    try:
        source = await bot.store.get(job_id)
        if source is None:
            raise Refusal(
                "This result is too old: its images are no longer kept. Please run /stylize again.", "expired"
            )
        settings = await bot.intake.gate(interaction)
        refusal = _owner_only(source, settings, interaction.user.id)
        if refusal is not None:
            raise refusal
        params, notes = cap_to_server(change(source.params, settings), settings, bot.config)
        record = bot.intake.new_record(
            interaction, params, source.content_blob, source.style_ref, received_at, parent_id=source.id
        )
        try:
            await bot.intake.accept(interaction, record, notes)
        except SourceMissing as exc:
            await bot.store.delete(record.id)
            raise Refusal(f"I cannot start this job again: {exc}. Please run /stylize again.", "expired") from None
    except Refusal as exc:
        await bot.intake.refuse(interaction, exc)


class AdjustDialog(discord.ui.Modal, title="Adjust and run again"):
    """Style strength, seed and size for a new run of a result, pre-filled with the result's own."""

    def __init__(self, bot: NSTBot, source: JobRecord) -> None:
        super().__init__(custom_id=f"nst-adjust:{source.id}", timeout=ADJUST_TIMEOUT_S)
        self.bot = bot
        self.source = source
        low, high = STYLE_STRENGTH_RANGE
        limits = bot.config.limits
        params = source.params
        self.strength = discord.ui.TextInput(
            label=f"Style strength ({low:g} to {high:g}; 1 is normal)",
            custom_id="strength",
            default=f"{params.style_strength:g}",
            max_length=8,
        )
        self.seed = discord.ui.TextInput(
            label="Seed (empty: a new random one)", custom_id="seed", default=str(params.seed), required=False,
            max_length=10,
        )
        self.size = discord.ui.TextInput(
            label=f"Size: long side in pixels ({limits.min_size} to {limits.max_size})",
            custom_id="size",
            default=str(params.size),
            max_length=5,
        )
        for item in (self.strength, self.seed, self.size):
            self.add_item(item)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        try:
            changed = adjusted(
                self.source.params, self.strength.value, self.seed.value, self.size.value, self.bot.config
            )
        except Rejection as exc:
            await interaction.response.send_message(f"⚠️ {exc}", ephemeral=True)
            return
        await start_from(self.bot, self.source.id, interaction, lambda _params, _settings: changed)

    async def on_error(self, interaction: discord.Interaction, error: Exception) -> None:
        await self.bot.report_failure(interaction, error)


async def _open_adjust(bot: NSTBot, job_id: str, interaction: discord.Interaction) -> None:
    """Open the Adjust dialog (a modal must be the first answer, so the checks here are quick ones)."""
    source = await bot.store.get(job_id)
    if source is None:
        await interaction.response.send_message(
            "⚠️ This result is too old: its images are no longer kept. Please run /stylize again.", ephemeral=True
        )
        return
    settings = await bot.store.guild_settings(interaction.guild_id) if interaction.guild_id else None
    refusal = _owner_only(source, settings, interaction.user.id)
    if refusal is not None:
        await interaction.response.send_message(f"⚠️ {refusal}", ephemeral=True)
        return
    await interaction.response.send_modal(AdjustDialog(bot, source))
