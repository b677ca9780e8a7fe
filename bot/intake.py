"""From an acknowledged interaction to an accepted job, or a clear refusal.

Both /stylize and the buttons under a result (re-run, more style...) come through here:
the gates (shutdown, server allowlist, allowed channels, cooldown, per-user limit), then,
for /stylize, the option and attachment checks and the downloads; then the job is written
to the store *before* it is queued and the requester is told.  Every refusal is an
ephemeral message with its own reason.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import TYPE_CHECKING

import discord

from bot.config import Config
from bot.downloads import DownloadError, fetch
from bot.jobs import BLOB_PREFIX, PRESET_PREFIX, JobParams, JobRecord, new_job_id
from bot.runner import RESTARTING, SourceMissing
from bot.store import GuildSettings
from bot.validation import (
    AttachmentInfo,
    Rejection,
    StylizeOptions,
    check_attachment,
    check_image,
    download_failed,
    resolve_params,
)
from nst_engine.pool import JobTooLarge, OwnerLimitReached, PoolClosed, PoolError, QueueFull

if TYPE_CHECKING:
    from bot.app import NSTBot

log = logging.getLogger("bot.intake")

_POOL_REFUSALS: dict[type[PoolError], str] = {
    OwnerLimitReached: "user_limit",
    JobTooLarge: "too_large",
    PoolClosed: "shutdown",
}


class Refusal(Rejection):
    """A :class:`Rejection` with a short reason code for the refusal metrics."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def channel_allowed(channel: object, allowed: list[int]) -> bool:
    """Whether ``channel`` is on the list, or is a thread (or forum post) under a channel that is."""
    return getattr(channel, "id", None) in allowed or getattr(channel, "parent_id", None) in allowed


class Intake:
    """Accepts or refuses new jobs for one bot."""

    def __init__(self, bot: NSTBot) -> None:
        self._bot = bot
        self._last_accepted: dict[int, float] = {}
        # Jobs between the final check of their user's limits and the runner taking them.
        self._accepting: Counter[int] = Counter()

    @property
    def _config(self) -> Config:
        return self._bot.config

    async def gate(self, interaction: discord.Interaction) -> GuildSettings | None:
        """Refuse early what no option could fix; return the server's settings."""
        runner = self._bot.runner
        if runner.stopping:
            raise Refusal(RESTARTING, "shutdown")
        allowlist = self._config.discord.guild_allowlist
        if interaction.guild_id is None:
            raise Refusal("Style transfer works in servers only, not in direct messages.", "dm")
        if allowlist and interaction.guild_id not in allowlist:
            raise Refusal("This bot is not enabled for this server.", "guild")
        settings = await self._bot.store.guild_settings(interaction.guild_id)
        if settings.allowed_channels and not channel_allowed(interaction.channel, settings.allowed_channels):
            channels = ", ".join(f"<#{channel}>" for channel in settings.allowed_channels)
            raise Refusal(f"Style transfer is not enabled in this channel. Try {channels}.", "channel")
        self._check_user(interaction.user.id)
        return settings

    def _check_user(self, user_id: int) -> None:
        """Refuse a user still in their cooldown, or with as many jobs as they may have."""
        cooldown = self._config.limits.cooldown_s
        last = self._last_accepted.get(user_id)
        if last is not None and time.monotonic() - last < cooldown:
            wait = max(1, round(cooldown - (time.monotonic() - last)))
            raise Refusal(f"Slow down a little: you can start another job in {wait} s.", "cooldown")
        limit = self._config.limits.max_jobs_per_user
        if self._bot.runner.active_count(user_id) + self._accepting[user_id] >= limit:
            plural = "job" if limit == 1 else "jobs"
            raise Refusal(
                f"You already have {limit} {plural} queued or running. Wait for one to finish, or cancel one.",
                "user_limit",
            )

    async def stylize(
        self,
        interaction: discord.Interaction,
        options: StylizeOptions,
        content: discord.Attachment,
        style: discord.Attachment | None,
        received_at: float,
        saved_style: str | None = None,
    ) -> None:
        """Handle an acknowledged /stylize (or menu command): check, download, store, queue, answer.

        ``saved_style`` is the blob key of the style the user saved with "Use as style", used
        when neither ``style`` nor a preset is given.
        """
        try:
            settings = await self.gate(interaction)
            try:
                params, notes = resolve_params(options, self._config, self._bot.presets, settings)
            except Rejection as exc:
                raise Refusal(str(exc), "options") from None
            sources = [("content", AttachmentInfo.from_discord(content))]
            if style is not None:
                sources.append(("style", AttachmentInfo.from_discord(style)))
            for role, info in sources:
                try:
                    check_attachment(info, role, self._config)
                except Rejection as exc:
                    raise Refusal(str(exc), "attachment") from None
            datas = await asyncio.gather(*(self._download(role, info) for role, info in sources))
            for (role, info), data in zip(sources, datas):
                try:
                    await asyncio.to_thread(check_image, data, role, info.filename, self._config)
                except Rejection as exc:
                    raise Refusal(str(exc), "image") from None
            keys = [await asyncio.to_thread(self._bot.blobs.put_source, data) for data in datas]
            if style is not None:
                style_ref = f"{BLOB_PREFIX}{keys[1]}"
            elif params.preset is None and saved_style is not None:
                style_ref = f"{BLOB_PREFIX}{saved_style}"
            else:
                style_ref = f"{PRESET_PREFIX}{params.preset}"
            record = self.new_record(interaction, params, keys[0], style_ref, received_at)
            try:
                await self.accept(interaction, record, notes)
            except SourceMissing:
                await self._bot.store.delete(record.id)
                raise Refusal(
                    'Your saved style is no longer stored. Right-click an image and pick "Use as style" again.',
                    "expired",
                ) from None
        except Refusal as exc:
            await self.refuse(interaction, exc)

    async def remember_style(self, interaction: discord.Interaction, image: discord.Attachment) -> None:
        """Handle an acknowledged "Use as style": check and keep ``image`` as the user's style, then confirm."""
        try:
            if interaction.guild_id is None or (
                self._config.discord.guild_allowlist and interaction.guild_id not in self._config.discord.guild_allowlist
            ):
                raise Refusal("This bot is not enabled for this server.", "guild")
            info = AttachmentInfo.from_discord(image)
            try:
                check_attachment(info, "style", self._config)
            except Rejection as exc:
                raise Refusal(str(exc), "attachment") from None
            data = await self._download("style", info)
            try:
                await asyncio.to_thread(check_image, data, "style", info.filename, self._config)
            except Rejection as exc:
                raise Refusal(str(exc), "image") from None
            key = await asyncio.to_thread(self._bot.blobs.put_source, data)
            await self._bot.store.save_user_style(interaction.user.id, key, info.filename)
        except Refusal as exc:
            await self.refuse(interaction, exc)
            return
        try:
            await interaction.edit_original_response(
                content=f'🎨 `{info.filename}` is now your style. Right-click any picture and pick "Stylize with my '
                'style" to use it.',
                view=None,
            )
        except discord.HTTPException as exc:
            log.warning("could not confirm the saved style to user %s: %s", interaction.user.id, exc)

    async def _download(self, role: str, info: AttachmentInfo) -> bytes:
        try:
            return await fetch(self._bot.http_session, info.url, declared_size=info.size, limits=self._config.downloads)
        except DownloadError as exc:
            raise Refusal(str(download_failed(role, info.filename, exc)), "download") from None

    def new_record(
        self,
        interaction: discord.Interaction,
        params: JobParams,
        content_blob: str,
        style_ref: str,
        received_at: float,
        parent_id: str | None = None,
    ) -> JobRecord:
        """A job answering ``interaction``; its token is taken to live ``delivery.token_ttl_s`` from receipt."""
        return JobRecord(
            id=new_job_id(),
            user_id=interaction.user.id,
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id or 0,
            application_id=interaction.application_id,
            interaction_token=interaction.token,
            token_expires_at=received_at + self._config.delivery.token_ttl_s,
            upload_limit=interaction.filesize_limit,
            params=params,
            content_blob=content_blob,
            style_ref=style_ref,
            created_at=time.time(),
            parent_id=parent_id,
        )

    async def accept(self, interaction: discord.Interaction, record: JobRecord, notes: list[str]) -> None:
        """Store the job, queue it, confirm privately, then post its public status message."""
        user_id = record.user_id
        # Requests sent together all pass the gate while each downloads: check again, and claim the
        # user's cooldown and job slot, with nothing awaited in between.
        self._check_user(user_id)
        previous = self._last_accepted.get(user_id)
        claimed = self._last_accepted[user_id] = time.monotonic()
        self._accepting[user_id] += 1
        try:
            await self._bot.store.add(record)
            try:
                active = await self._bot.runner.submit(record, notes)
            except QueueFull as exc:
                await self._bot.store.delete(record.id)
                wait = max(1, round(exc.retry_after))
                raise Refusal(f"The queue is full. Please try again in about {wait} s.", "queue_full") from None
            except PoolError as exc:
                await self._bot.store.delete(record.id)
                raise Refusal(str(exc), _POOL_REFUSALS.get(type(exc), "pool")) from None
        except BaseException:
            if self._last_accepted.get(user_id) == claimed:
                if previous is None:
                    del self._last_accepted[user_id]
                else:
                    self._last_accepted[user_id] = previous
            raise
        finally:
            self._accepting[user_id] -= 1
            if not self._accepting[user_id]:
                del self._accepting[user_id]
        # The deferred (ephemeral) response must be answered before the public status message is
        # posted: Discord turns the first followup after a defer into the deferred response itself.
        try:
            confirmation = f"Your job `{record.id[:8]}` is queued; its progress and result will appear in this channel."
            await interaction.edit_original_response(content="\n".join([confirmation, *notes]))
        except discord.HTTPException as exc:
            log.warning("could not confirm job %s to its requester: %s", record.id, exc)
        await self._bot.runner.follow(active)

    async def refuse(self, interaction: discord.Interaction, refusal: Refusal) -> None:
        """Answer the (ephemeral, deferred) interaction with the reason it was refused."""
        self._bot.metrics.refusals.labels(refusal.reason).inc()
        log.info("refused %s from user %s: %s", interaction.type.name, interaction.user.id, refusal)
        try:
            await interaction.edit_original_response(content=f"⚠️ {refusal}")
        except discord.HTTPException as exc:
            log.warning("could not tell user %s why their request was refused: %s", interaction.user.id, exc)
