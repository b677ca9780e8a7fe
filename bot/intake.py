"""From an acknowledged interaction to an accepted job, or a clear refusal.

Both /stylize and the buttons under a result (re-run, more style...) come through here:
the gates (shutdown, server allowlist, allowed channels, cooldown, per-user limit, free
disk, the user's storage quota), then, for /stylize, the option and attachment checks and
the downloads; then the job is written to the store *before* it is queued and the
requester is told.  Every refusal is an ephemeral message with its own reason.

Heavy work is bounded before it starts: a /stylize counts against its user's job limit from
the first gate, so a flood of requests cannot all be downloading at once; downloads and
decodes wait for global permits, and decodes run in processes of their own (a decode is
seconds of CPU in Pillow, much of it holding the interpreter lock, which in a thread would
starve the event loop; and a decoder that crashes on a hostile file takes only itself down); a request refused after its download costs a
cooldown, like an accepted one, so a broken file cannot be sent again and again at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import Counter
from collections.abc import Iterator
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING

import discord

from bot.config import Config
from bot.downloads import DownloadError, fetch
from bot.formatting import format_bytes
from bot.jobs import BLOB_PREFIX, PRESET_PREFIX, JobParams, JobRecord, new_job_id
from bot.runner import RESTARTING, ActiveJob, SourceMissing
from bot.store import GuildSettings, StoreFailed
from bot.validation import (
    AttachmentInfo,
    Rejection,
    StylizeOptions,
    check_attachment,
    download_failed,
    image_refused,
    resolve_params,
)
from bot.uploads import prepare_upload
from nst_engine.errors import ImageError
from nst_engine.pool import JobTooLarge, OwnerLimitReached, PoolClosed, PoolError, QueueFull

if TYPE_CHECKING:
    from bot.app import NSTBot

log = logging.getLogger("bot.intake")

_POOL_REFUSALS: dict[type[PoolError], str] = {
    OwnerLimitReached: "user_limit",
    JobTooLarge: "too_large",
    PoolClosed: "shutdown",
}


# How much less CPU priority decoding gets than the bot's event loop (Unix niceness, 0-19).
_DECODER_NICENESS = 10

_STORAGE_FAILING = "I cannot save new jobs right now (my storage is failing). Please try again later."


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
        self._last_charged: dict[int, float] = {}
        # Requests between their first gate (a /stylize) or the final check of their user's limits
        # (a button) and the runner taking their job.
        self._accepting: Counter[int] = Counter()
        downloads = bot.config.downloads
        self._downloads = asyncio.Semaphore(downloads.max_concurrent)
        self._decodes = asyncio.Semaphore(downloads.max_concurrent_decodes)
        self._decoder = _decoder_processes(downloads.max_concurrent_decodes)

    def close(self) -> None:
        """Let the decode processes go once their current work is done."""
        self._decoder.shutdown(wait=False, cancel_futures=True)

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
        await self._check_storage(interaction.user.id)
        self._check_user(interaction.user.id)
        return settings

    def _check_user(self, user_id: int, counted: bool = False) -> None:
        """Refuse a user still in their cooldown, or with as many jobs as they may have.

        ``counted``: the request being checked is already among the user's requests in progress.
        """
        cooldown = self._config.limits.cooldown_s
        last = self._last_charged.get(user_id)
        if last is not None and time.monotonic() - last < cooldown:
            wait = max(1, round(cooldown - (time.monotonic() - last)))
            raise Refusal(f"Slow down a little: you can start another job in {wait} s.", "cooldown")
        limit = self._config.limits.max_jobs_per_user
        if self._bot.runner.active_count(user_id) + self._accepting[user_id] - counted >= limit:
            plural = "job" if limit == 1 else "jobs"
            raise Refusal(
                f"You already have {limit} {plural} queued or running. Wait for one to finish, or cancel one.",
                "user_limit",
            )

    async def _check_storage(self, user_id: int) -> None:
        """Refuse new jobs while the disk is nearly full, or the user keeps as many images as they may."""
        # Cheap checks: on the shared threads, never queued behind the decodes.
        storage = self._config.storage
        blobs = self._bot.blobs
        if storage.min_free_bytes:
            free = await asyncio.to_thread(blobs.free_bytes)
            if free < storage.min_free_bytes:
                log.warning("refusing new jobs: %s free on the data disk", format_bytes(free))
                raise Refusal(
                    "My storage is nearly full, so I am not taking new jobs right now. Please try again later.",
                    "disk_full",
                )
        if storage.max_bytes_per_user:
            sources, job_ids = await self._bot.store.user_files(user_id)
            used = await asyncio.to_thread(blobs.stored_bytes, sources, job_ids)
            if used >= storage.max_bytes_per_user:
                raise Refusal(
                    f"You have {format_bytes(used)} of images stored with me, the most one person may keep "
                    f"({format_bytes(storage.max_bytes_per_user)}). Each job's images are deleted "
                    f"{storage.retention_hours:g} hours after it; please try again then.",
                    "quota",
                )

    @contextlib.contextmanager
    def _in_progress(self, user_id: int) -> Iterator[None]:
        """Count a request against its user's job limit while it is being taken in."""
        self._accepting[user_id] += 1
        try:
            yield
        finally:
            self._accepting[user_id] -= 1
            if not self._accepting[user_id]:
                del self._accepting[user_id]

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
        user_id = interaction.user.id
        try:
            settings = await self.gate(interaction)
            # Nothing is awaited between the gate's last check and this count.
            with self._in_progress(user_id):
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
                try:
                    keys = await asyncio.gather(*(self._take_in(role, info) for role, info in sources))
                except Refusal:
                    self._charge_cooldown(user_id)
                    raise
                if style is not None:
                    style_ref = f"{BLOB_PREFIX}{keys[1]}"
                elif params.preset is None and saved_style is not None:
                    style_ref = f"{BLOB_PREFIX}{saved_style}"
                else:
                    style_ref = f"{PRESET_PREFIX}{params.preset}"
                record = self.new_record(interaction, params, keys[0], style_ref, received_at)
                try:
                    active = await self._admit(record, notes)
                except SourceMissing:
                    await self._bot.store.delete(record.id)
                    raise Refusal(
                        'Your saved style is no longer stored. Right-click an image and pick "Use as style" again.',
                        "expired",
                    ) from None
            # The request leaves the count here, the moment the runner counts its job: counted twice while
            # it is announced, it would refuse the user's next request below their limit.
            await self._announce(interaction, active)
        except Refusal as exc:
            await self.refuse(interaction, exc)

    async def remember_style(self, interaction: discord.Interaction, image: discord.Attachment) -> None:
        """Handle an acknowledged "Use as style": check and keep ``image`` as the user's style, then confirm."""
        try:
            allowlist = self._config.discord.guild_allowlist
            if interaction.guild_id is None or (allowlist and interaction.guild_id not in allowlist):
                raise Refusal("This bot is not enabled for this server.", "guild")
            info = AttachmentInfo.from_discord(image)
            try:
                check_attachment(info, "style", self._config)
            except Rejection as exc:
                raise Refusal(str(exc), "attachment") from None
            key = await self._take_in("style", info)
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

    def _charge_cooldown(self, user_id: int) -> None:
        self._last_charged[user_id] = time.monotonic()

    async def _take_in(self, role: str, info: AttachmentInfo) -> str:
        """Download, decode and store one attachment, within the global permits; its blob key."""
        limits = self._config.downloads
        loop = asyncio.get_running_loop()
        # The download's permit is held until its bytes are decoded: at most max_concurrent raw uploads in memory.
        async with self._downloads:
            try:
                data = await fetch(self._bot.http_session, info.url, declared_size=info.size, limits=limits)
            except DownloadError as exc:
                raise Refusal(str(download_failed(role, info.filename, exc)), "download") from None
            async with self._decodes:
                decoder = self._decoder
                try:
                    prepared = await loop.run_in_executor(
                        decoder,
                        functools.partial(
                            prepare_upload, data, max_pixels=limits.max_pixels, max_side=self._config.limits.max_size
                        ),
                    )
                except ImageError as exc:
                    raise Refusal(str(image_refused(role, info.filename, exc)), "image") from None
                except BrokenProcessPool:
                    log.error("an image decoder died reading %s; starting new ones", info.filename)
                    if self._decoder is decoder:
                        self._decoder = _decoder_processes(limits.max_concurrent_decodes)
                    raise Refusal(
                        f"The {role} image (`{info.filename}`) could not be read: it made the image decoder fail. "
                        "Please re-save it as PNG or JPEG and send it again.",
                        "image",
                    ) from None
        try:
            return await asyncio.to_thread(self._bot.blobs.put_source, prepared.data)
        except OSError as exc:
            log.error("could not store an upload: %s", exc)
            raise Refusal(_STORAGE_FAILING, "storage") from None

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
        with self._in_progress(record.user_id):
            active = await self._admit(record, notes)
        await self._announce(interaction, active)

    async def _admit(self, record: JobRecord, notes: list[str]) -> ActiveJob:
        """Check the user's limits once more, then store and queue the job, claiming their cooldown.

        The request must already count among its user's requests in progress (:meth:`_in_progress`);
        the caller ends that count once this returns, when the runner counts the job instead.
        """
        user_id = record.user_id
        # Requests sent together all pass the gate while each downloads: check again, and claim the
        # user's cooldown, with nothing awaited in between.
        self._check_user(user_id, counted=True)
        previous = self._last_charged.get(user_id)
        claimed = self._last_charged[user_id] = time.monotonic()
        try:
            return await self._store_and_submit(record, notes)
        except BaseException:
            if self._last_charged.get(user_id) == claimed:
                if previous is None:
                    del self._last_charged[user_id]
                else:
                    self._last_charged[user_id] = previous
            raise

    async def _announce(self, interaction: discord.Interaction, active: ActiveJob) -> None:
        """Confirm a queued job to its requester, then post its public status message and follow it."""
        record = active.record
        # The deferred (ephemeral) response must be answered before the public status message is
        # posted: Discord turns the first followup after a defer into the deferred response itself.
        try:
            confirmation = f"Your job `{record.id[:8]}` is queued; its progress and result will appear in this channel."
            await interaction.edit_original_response(content="\n".join([confirmation, *active.notes]))
        except discord.HTTPException as exc:
            log.warning("could not confirm job %s to its requester: %s", record.id, exc)
        await self._bot.runner.follow(active)

    async def _store_and_submit(self, record: JobRecord, notes: list[str]) -> ActiveJob:
        """Write the job to the store, then queue it; forget it again if the pool refuses it."""
        try:
            await self._bot.store.add(record)
        except StoreFailed as exc:
            log.error("could not store job %s: %s", record.id, exc)
            raise Refusal(_STORAGE_FAILING, "storage") from None
        try:
            return await self._bot.runner.submit(record, notes)
        except QueueFull as exc:
            await self._bot.store.delete(record.id)
            wait = max(1, round(exc.retry_after))
            raise Refusal(f"The queue is full. Please try again in about {wait} s.", "queue_full") from None
        except PoolError as exc:
            await self._bot.store.delete(record.id)
            raise Refusal(str(exc), _POOL_REFUSALS.get(type(exc), "pool")) from None

    async def refuse(self, interaction: discord.Interaction, refusal: Refusal) -> None:
        """Answer the (ephemeral, deferred) interaction with the reason it was refused."""
        self._bot.metrics.refusals.labels(refusal.reason).inc()
        log.info("refused %s from user %s: %s", interaction.type.name, interaction.user.id, refusal)
        try:
            await interaction.edit_original_response(content=f"⚠️ {refusal}")
        except discord.HTTPException as exc:
            log.warning("could not tell user %s why their request was refused: %s", interaction.user.id, exc)


def _decoder_processes(count: int) -> ProcessPoolExecutor:
    # Forked from a small server process, not from the bot with its threads and sockets; at a lower
    # CPU priority, so the event loop always gets the processor first.
    return ProcessPoolExecutor(
        count, mp_context=multiprocessing.get_context("forkserver"), initializer=os.nice, initargs=(_DECODER_NICENESS,)
    )
