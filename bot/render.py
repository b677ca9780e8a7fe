"""What every message the bot posts looks like: queued, running, finished, failed, status.

Functions here are pure: they take plain values and return an :class:`Outgoing` (text,
embed, files as bytes, buttons), so they are easy to test and each send attempt can
build fresh :class:`discord.File` objects from the same bytes.
"""

from __future__ import annotations

import datetime
import io
import time
from dataclasses import dataclass, field

import discord

from bot.formatting import format_bytes, format_duration, loss_line, loss_table, progress_bar
from bot.jobs import JobParams, JobRecord, ResultSummary
from bot.views import result_view, running_view
from nst_engine.request import Progress

QUEUED_COLOUR = discord.Colour(0x99AAB5)
RUNNING_COLOUR = discord.Colour(0x5865F2)
DONE_COLOUR = discord.Colour(0x57F287)
FAILED_COLOUR = discord.Colour(0xED4245)
CANCELLED_COLOUR = discord.Colour(0x4F545C)
PAUSED_COLOUR = discord.Colour(0xFEE75C)


@dataclass
class Outgoing:
    """A message ready to send or to edit into place."""

    embed: discord.Embed
    content: str | None = None
    files: list[tuple[str, bytes]] = field(default_factory=list)
    view: discord.ui.View | None = None
    mention: int | None = None

    def discord_files(self) -> list[discord.File]:
        return [discord.File(io.BytesIO(data), filename=name) for name, data in self.files]

    @property
    def allowed_mentions(self) -> discord.AllowedMentions:
        """Only ever ping the requester, and only when ``mention`` is set."""
        if self.mention is None:
            return discord.AllowedMentions.none()
        return discord.AllowedMentions(everyone=False, roles=False, users=[discord.Object(self.mention)])


def requester_line(record: JobRecord) -> str:
    """Who asked for the job (a mention inside an embed names without notifying)."""
    return f"Requested by <@{record.user_id}>"


def eta(seconds: float, now: float | None = None) -> str:
    """A moment ``seconds`` from now as a Discord relative timestamp, which every client counts down by itself, in
    its user's language."""
    at = datetime.datetime.fromtimestamp((time.time() if now is None else now) + seconds, tz=datetime.UTC)
    return discord.utils.format_dt(at, "R")


def describe_params(params: JobParams, style_label: str) -> str:
    """One line of settings: style, quality, size, strength, colours, seed."""
    parts = [
        f"style: {style_label}",
        f"{params.quality} · {params.size} px · {params.steps} steps",
        f"strength ×{params.style_strength:g}",
    ]
    if params.preserve_colors:
        parts.append("colours preserved")
    parts.append(f"seed {params.seed}")
    return " · ".join(parts)


DONE_TITLE = "✅ Done"
FAILED_TITLE = "❌ Failed"
CANCELLED_TITLE = "🛑 Cancelled"
FINAL_TITLES: frozenset[str] = frozenset({DONE_TITLE, FAILED_TITLE, CANCELLED_TITLE})
"""Titles of the messages that end a job; a restarted bot looks for them before re-sending."""


def job_footer(record: JobRecord) -> str:
    """The footer that ties a message to its job."""
    return f"Job {record.id[:8]}"


def queued_message(
    record: JobRecord,
    style_label: str,
    position: int,
    wait: float | None,
    notes: list[str],
    *,
    now: float | None = None,
) -> Outgoing:
    """Waiting in the queue: position and, when known, when it should start (a countdown in the client)."""
    if position <= 1:
        where = "Next in line"
    else:
        where = f"Position **{position}** in the queue"
    when = f" · starts {eta(wait, now)}" if wait is not None else ""
    lines = [f"{where}{when}", requester_line(record), describe_params(record.params, style_label), *notes]
    embed = discord.Embed(title="⏳ Queued", description="\n".join(lines), colour=QUEUED_COLOUR)
    embed.set_footer(text=job_footer(record))
    return Outgoing(embed=embed, view=running_view(record.id))


def running_message(
    record: JobRecord,
    style_label: str,
    progress: Progress | None,
    *,
    device: str | None,
    elapsed: float,
    notes: list[str],
    now: float | None = None,
) -> Outgoing:
    """Running: progress bar, iteration, current losses, when it should end and, when there is one, a preview."""
    lines = []
    if progress is None:
        lines.append(f"`{progress_bar(0, 1)}`")
        lines.append("Starting" + (f" on {device}" if device else "") + "…")
    else:
        lines.append(f"`{progress_bar(progress.iteration, progress.total)}`")
        remaining = ""
        if progress.iteration > 0 and elapsed > 0:
            left = elapsed * (progress.total - progress.iteration) / progress.iteration
            remaining = f" · done {eta(left, now)}"
        on_device = f" · on {device}" if device else ""
        lines.append(f"Iteration **{progress.iteration}** / {progress.total}{on_device}{remaining}")
        lines.append(loss_line(progress.losses))
    lines.append(requester_line(record))
    lines.append(describe_params(record.params, style_label))
    lines.extend(notes)
    embed = discord.Embed(title="🖌️ Stylising", description="\n".join(lines), colour=RUNNING_COLOUR)
    embed.set_footer(text=job_footer(record))
    files = []
    if progress is not None and progress.preview:
        files.append(("preview.png", progress.preview))
        embed.set_image(url="attachment://preview.png")
    return Outgoing(embed=embed, files=files, view=running_view(record.id))


def result_message(
    record: JobRecord,
    style_label: str,
    summary: ResultSummary,
    image: tuple[str, bytes],
    *,
    mention: bool,
    spoiler: bool = False,
) -> Outgoing:
    """The finished image with its loss summary and the follow-up buttons.

    With ``spoiler`` the image is a plain attachment marked as a spoiler (an embed's image
    cannot be hidden), so members choose to reveal it.
    """
    name, data = image
    description = (
        f"{requester_line(record)}\n{describe_params(record.params, style_label)}\n"
        f"```\n{loss_table(summary.losses)}\n```"
    )
    embed = discord.Embed(title=DONE_TITLE, description=description, colour=DONE_COLOUR)
    embed.add_field(name="Iterations", value=str(summary.evaluations))
    embed.add_field(name="Size", value=f"{summary.width}×{summary.height}")
    embed.add_field(name="Time", value=format_duration(summary.seconds))
    embed.add_field(name="Device", value=summary.device)
    embed.add_field(name="Seed", value=str(summary.seed))
    embed.add_field(name="Weights", value=summary.weights)
    if spoiler:
        name = f"SPOILER_{name}"
    else:
        embed.set_image(url=f"attachment://{name}")
    fmt = name.rsplit(".", 1)[-1].upper()
    embed.set_footer(text=f"{job_footer(record)} · {fmt}, {format_bytes(len(data))}")
    content = f"<@{record.user_id}>, your image is ready." if mention else None
    return Outgoing(
        embed=embed,
        content=content,
        files=[(name, data)],
        view=result_view(record.id, preserve_colors=record.params.preserve_colors),
        mention=record.user_id if mention else None,
    )


def failed_message(record: JobRecord, error: str, *, mention: bool) -> Outgoing:
    """A job that could not finish, with the reason."""
    embed = discord.Embed(title=FAILED_TITLE, description=f"{requester_line(record)}\n{error}", colour=FAILED_COLOUR)
    embed.set_footer(text=job_footer(record))
    content = f"<@{record.user_id}>, your job could not be finished." if mention else None
    return Outgoing(embed=embed, content=content, mention=record.user_id if mention else None)


def cancelled_message(record: JobRecord, reason: str, *, mention: bool) -> Outgoing:
    """A job stopped on purpose (by its requester, a moderator, or the bot)."""
    embed = discord.Embed(
        title=CANCELLED_TITLE, description=f"{requester_line(record)}\n{reason}", colour=CANCELLED_COLOUR
    )
    embed.set_footer(text=job_footer(record))
    content = f"<@{record.user_id}>, your job was cancelled." if mention else None
    return Outgoing(embed=embed, content=content, mention=record.user_id if mention else None)


def ready_ping(record: JobRecord) -> str | None:
    """The reply that notifies the requester of a job's end (an edit notifies nobody); None for cancelled jobs."""
    if record.state == "finished":
        return f"<@{record.user_id}>, your image is ready."
    if record.state == "failed":
        return f"<@{record.user_id}>, your job could not be finished."
    return None


def paused_message(record: JobRecord, style_label: str) -> Outgoing:
    """Shown when the bot shuts down with this job unfinished: it is kept and resumes on restart."""
    description = (
        "The bot is restarting. Your job is saved and will continue as soon as it is back.\n"
        + f"{requester_line(record)}\n{describe_params(record.params, style_label)}"
    )
    embed = discord.Embed(title="⏸️ Paused", description=description, colour=PAUSED_COLOUR)
    embed.set_footer(text=job_footer(record))
    return Outgoing(embed=embed)


@dataclass(frozen=True)
class StatusFigures:
    """The numbers behind /nst status."""

    queue_length: int
    workers_by_device: dict[str, int]
    running_by_device: dict[str, int]
    memory: dict[str, tuple[int, int]]
    completed: int
    failed: int
    cancelled: int
    uptime_s: float
    version: str
    pool_alive: bool
    shards: dict[int, bool] = field(default_factory=dict)
    batches_by_device: dict[str, list[int]] = field(default_factory=dict)
    backend: str = "local"
    workers_by_node: dict[str, int] = field(default_factory=dict)


def describe_shards(shards: dict[int, bool]) -> str:
    """Each gateway connection's state: one line per shard, or one word without sharding."""
    state = {True: "connected", False: "disconnected"}
    if len(shards) == 1:
        return state[next(iter(shards.values()))]
    return "\n".join(f"shard {shard_id}: {state[connected]}" for shard_id, connected in sorted(shards.items()))


def _backend_line(figures: StatusFigures) -> str:
    if figures.backend == "local":
        return "local worker processes"
    nodes = sorted(figures.workers_by_node.items())
    lines = [f"{figures.backend}, {len(nodes)} node{'s' if len(nodes) != 1 else ''}"]
    lines += [f"{node}: {count} worker{'s' if count != 1 else ''}" for node, count in nodes]
    return "\n".join(lines)


def status_message(figures: StatusFigures) -> Outgoing:
    """The /nst status embed."""
    embed = discord.Embed(
        title="Style transfer bot",
        colour=RUNNING_COLOUR if figures.pool_alive else FAILED_COLOUR,
    )
    embed.add_field(name="Queue", value=f"{figures.queue_length} waiting")
    workers = [
        f"{device}: {count} ({figures.running_by_device.get(device, 0)} busy)"
        for device, count in sorted(figures.workers_by_device.items())
    ]
    embed.add_field(name="Workers", value="\n".join(workers) or "none")
    embed.add_field(name="Backend", value=_backend_line(figures))
    batches = [
        f"{device}: {' + '.join(str(size) for size in sizes)} jobs"
        for device, sizes in sorted(figures.batches_by_device.items())
        if any(size > 1 for size in sizes)
    ]
    if batches:
        embed.add_field(name="Batches", value="\n".join(batches))
    memory = [
        f"{device}: {format_bytes(used)} / {format_bytes(total)}"
        for device, (used, total) in sorted(figures.memory.items())
    ]
    embed.add_field(name="Memory", value="\n".join(memory) or "n/a")
    embed.add_field(
        name="Jobs",
        value=f"{figures.completed} done · {figures.failed} failed · {figures.cancelled} cancelled",
    )
    if figures.shards:
        embed.add_field(name="Gateway", value=describe_shards(figures.shards))
    embed.add_field(name="Uptime", value=format_duration(figures.uptime_s))
    embed.add_field(name="Version", value=figures.version)
    if not figures.pool_alive:
        embed.description = "⚠️ The worker pool is not running."
    return Outgoing(embed=embed)
