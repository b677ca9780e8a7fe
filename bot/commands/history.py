"""/nst jobs and /nst show: a member's own jobs, and a result of theirs posted again (added to /nst by register)."""

from __future__ import annotations

import asyncio
import datetime
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot.images import fit_upload
from bot.jobs import JobRecord
from bot.render import result_message
from bot.views import JobButton

if TYPE_CHECKING:
    from bot.app import NSTBot

# How far back /nst jobs and /nst show look.
HISTORY_LIMIT = 25
_RECENT_SHOWN = 10


def message_link(record: JobRecord) -> str | None:
    """A link to the message holding the job's answer (its status message, or the channel post)."""
    message_id = record.delivered_message_id or record.status_message_id
    if message_id is None or record.guild_id is None:
        return None
    return f"https://discord.com/channels/{record.guild_id}/{record.channel_id}/{message_id}"


def _when(record: JobRecord) -> str:
    return discord.utils.format_dt(datetime.datetime.fromtimestamp(record.created_at, tz=datetime.UTC), "R")


@app_commands.command(name="jobs", description="Your queued and running jobs, and your recent results")
async def jobs(interaction: discord.Interaction) -> None:
    bot: NSTBot = interaction.client  # type: ignore[assignment]
    records = await bot.store.jobs_of(interaction.user.id, interaction.guild_id, HISTORY_LIMIT)
    active = [record for record in records if not record.is_final]
    finished = [record for record in records if record.state == "finished"][:_RECENT_SHOWN]
    embed = discord.Embed(title="Your jobs", colour=discord.Colour(0x5865F2))
    view = discord.ui.View(timeout=None)
    lines = []
    for record in active:
        following = bot.runner.active(record.id)
        where = f"position {following.job.position}" if following and record.state == "queued" else record.state
        lines.append(f"`{record.id[:8]}` · {bot.runner.style_label(record)} · {where} · asked {_when(record)}")
        if len(view.children) < 25:
            view.add_item(JobButton("cancel", record.id, label=f"Cancel {record.id[:8]}"))
    embed.add_field(name="Queued and running", value="\n".join(lines) or "None.", inline=False)
    results = [
        f"`{record.id[:8]}` · {bot.runner.style_label(record)} · {_when(record)}"
        + (f" · [open]({link})" if (link := message_link(record)) else "")
        for record in finished
    ]
    embed.add_field(name="Recent results", value="\n".join(results) or "None yet.", inline=False)
    embed.set_footer(text="/nst show id: posts one of your results again")
    await interaction.response.send_message(
        embed=embed, view=view if view.children else discord.utils.MISSING, ephemeral=True
    )


async def _own_results(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    bot: NSTBot = interaction.client  # type: ignore[assignment]
    records = await bot.store.jobs_of(interaction.user.id, interaction.guild_id, HISTORY_LIMIT)
    return [
        app_commands.Choice(name=f"{record.id[:8]} · {bot.runner.style_label(record)}"[:100], value=record.id[:8])
        for record in records
        if record.state == "finished" and record.id.startswith(current.strip().lower())
    ]


@app_commands.command(name="show", description="Post one of your results again")
@app_commands.rename(job="id")
@app_commands.describe(job="The job id shown under the result (the first 8 characters are enough)")
@app_commands.autocomplete(job=_own_results)
async def show(interaction: discord.Interaction, job: app_commands.Range[str, 8, 32]) -> None:
    bot: NSTBot = interaction.client  # type: ignore[assignment]
    wanted = job.strip().lower()
    records = await bot.store.jobs_of(interaction.user.id, interaction.guild_id, HISTORY_LIMIT * 4)
    record = next((r for r in records if r.id.startswith(wanted)), None)
    if record is None or record.state != "finished" or record.summary is None:
        reason = "is not finished" if record is not None else "is not one of your jobs in this server"
        await interaction.response.send_message(
            f"⚠️ Job `{wanted}` {reason}. `/nst jobs` lists yours.", ephemeral=True
        )
        return
    await interaction.response.defer(thinking=True)
    png = await asyncio.to_thread(bot.blobs.result, record.id)
    if png is None:
        await interaction.edit_original_response(content=f"⚠️ The image of job `{wanted}` is no longer kept.")
        return
    image = await asyncio.to_thread(fit_upload, png, interaction.filesize_limit, f"stylized-{record.id[:8]}")
    settings = await bot.store.guild_settings(interaction.guild_id) if interaction.guild_id else None
    message = result_message(
        record,
        bot.runner.style_label(record),
        record.summary,
        image,
        mention=False,
        spoiler=bool(settings and settings.spoilers),
    )
    await interaction.edit_original_response(
        embed=message.embed, attachments=message.discord_files(), view=message.view
    )
