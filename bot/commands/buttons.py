"""What the buttons under a job do: cancel it, or start a new job from its images.

Buttons outlive the process that posted them; everything they need comes from the
durable store by job id (see :mod:`bot.views`).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import discord

from bot.intake import Refusal
from bot.jobs import STYLE_STRENGTH_RANGE, JobParams, new_seed
from bot.runner import SourceMissing
from bot.validation import cap_to_server

if TYPE_CHECKING:
    from bot.app import NSTBot


async def handle_job_button(bot: NSTBot, action: str, job_id: str, interaction: discord.Interaction) -> None:
    """Dispatch a press of one of our buttons."""
    if action == "cancel":
        await _cancel(bot, job_id, interaction)
    elif action == "delete":
        await _delete(bot, job_id, interaction)
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
    await interaction.edit_original_response(content="🗑️ Deleted the result and its stored images.")


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
    received_at = time.time()
    await interaction.response.defer(ephemeral=True, thinking=True)
    try:
        source = await bot.store.get(job_id)
        if source is None:
            raise Refusal(
                "This result is too old: its images are no longer kept. Please run /stylize again.", "expired"
            )
        settings = await bot.intake.gate(interaction)
        if settings is not None and settings.owner_only_buttons and interaction.user.id != source.user_id:
            raise Refusal(
                f"On this server only <@{source.user_id}>, who asked for this image, can use its buttons. "
                "Use /stylize or the right-click menus (Apps) to make your own.",
                "owner_only",
            )
        params, notes = cap_to_server(derive_params(source.params, action), settings, bot.config)
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
