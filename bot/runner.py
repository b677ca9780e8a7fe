"""A job's life after it was accepted: submit -> queue/progress updates -> final answer.

The runner owns every job this process is following.  It writes each state change to the
durable store, keeps the status message current (throttled), saves the finished image
before announcing it, and hands the final answer to :class:`~bot.delivery.Delivery`.
On start it resumes whatever the store says is unfinished; on shutdown it lets running
jobs finish for a grace period and pauses the rest, so they resume after the restart.

A job's images travel to the pool as the paths of its stored files: a worker reads them
when the job starts, so a queued job holds no image bytes in this process.  A job whose
following breaks on a fault (a full disk, a database error) is failed with a message to
its requester, and every ``storage.orphan_check_s`` the store is checked for jobs that no
one follows any more, which are started again (or failed, saying why).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.blobs import BlobStore
from bot.config import Config
from bot.delivery import Delivery
from bot.images import channel_upload_limit, fit_upload
from bot.jobs import BLOB_PREFIX, PRESET_PREFIX, JobRecord, ResultSummary
from bot.metrics import Metrics
from bot.presets import PresetCatalogue
from bot.render import (
    Outgoing,
    cancelled_message,
    failed_message,
    paused_message,
    queued_message,
    ready_ping,
    result_message,
    running_message,
)
from bot.store import JobStore, StoreFailed
from nst_engine.errors import ImageError
from nst_engine.imageio import encode_image, probe_image
from nst_engine.pool import Job, Pool, PoolClosed, PoolError
from nst_engine.request import Progress

log = logging.getLogger("bot.runner")

RESTARTING = "The bot is restarting. Please try again in a minute."
BROKE_DOWN = "Your job could not be finished because of a problem on my side (storing its result failed). Please try again."


class SourceMissing(Exception):
    """A job's source image is gone (pruned, or a preset no longer offered)."""


@dataclass
class ActiveJob:
    """A job this process is following, with what its status message needs."""

    record: JobRecord
    job: Job
    notes: list[str]
    task: asyncio.Task[None] | None = None
    cancel_reason: str | None = None
    pausing: bool = False
    started_at: float | None = None
    last_preview: bytes | None = None
    last_progress: Progress | None = field(default=None, repr=False)


class JobRunner:
    """Follows accepted jobs from the pool to their final answer."""

    def __init__(
        self,
        *,
        config: Config,
        pool: Pool,
        store: JobStore,
        blobs: BlobStore,
        delivery: Delivery,
        presets: PresetCatalogue,
        metrics: Metrics,
    ) -> None:
        self._config = config
        self._pool = pool
        self._store = store
        self._blobs = blobs
        self._delivery = delivery
        self._presets = presets
        self._metrics = metrics
        self._active: dict[str, ActiveJob] = {}
        self._delivering: dict[str, asyncio.Task[None]] = {}
        self._submitting: set[str] = set()
        self._orphan_watch: asyncio.Task[None] | None = None
        self.stopping = False

    # What is going on

    def style_label(self, record: JobRecord) -> str:
        """How a job's style is named in its messages."""
        if record.style_ref.startswith(PRESET_PREFIX):
            preset = self._presets.get(record.style_ref[len(PRESET_PREFIX) :])
            if preset is not None:
                return preset.label
        return "your image"

    def active(self, job_id: str) -> ActiveJob | None:
        return self._active.get(job_id)

    def active_count(self, user_id: int) -> int:
        """Jobs of ``user_id`` queued or running here."""
        return sum(1 for active in self._active.values() if active.record.user_id == user_id)

    # Starting and following

    async def submit(self, record: JobRecord, notes: list[str] | None = None) -> ActiveJob:
        """Submit ``record`` to the pool; nothing is shown to anyone yet.

        Raises :class:`PoolError` when the pool refuses the job (:class:`PoolClosed` once
        :meth:`stop` has begun) and :class:`SourceMissing` when its images are gone.
        """
        self._submitting.add(record.id)
        try:
            content, style, aspect = await self._sources(record)
        finally:
            self._submitting.discard(record.id)
        request = record.params.to_request(
            content,
            style,
            weights=self._config.pool.weights,
            max_input_pixels=self._config.downloads.max_pixels,
            style_loss=self._config.quality.style_loss,
        )
        if self.stopping:
            # A request that passed the intake gate before shutdown began must not slip past stop().
            raise PoolClosed(RESTARTING)
        job = self._pool.submit(
            request,
            owner=str(record.user_id),
            job_id=record.id,
            preview_size=self._config.progress.preview_size,
            content_aspect=aspect,
        )
        active = ActiveJob(record, job, list(notes or []))
        self._active[record.id] = active
        return active

    async def follow(self, active: ActiveJob) -> None:
        """Show the job's status message (posting it for a new job) and follow the job to its end.

        Never raises: a job that was submitted is followed whatever happens to its first message.
        """
        record, job = active.record, active.job
        try:
            message = queued_message(record, self.style_label(record), job.position, job.eta, active.notes)
            if record.status_message_id is None:
                await self._delivery.post_status(record, message)
            else:
                await self._delivery.edit_status(record, message)
        except Exception:
            log.exception("could not show the status of job %s; following it all the same", record.id)
        finally:
            active.task = asyncio.create_task(self._follow(active), name=f"job-{record.id}")

    async def _follow(self, active: ActiveJob) -> None:
        record, job = active.record, active.job
        progress_every = self._config.progress.edit_interval_s
        queue_every = self._config.progress.queue_edit_interval_s
        last_edit = time.monotonic()
        shown_position = job.position
        try:
            async for update in job.updates():
                now = time.monotonic()
                if update.kind == "queued":
                    if update.position != shown_position and now - last_edit >= queue_every:
                        shown_position = update.position
                        last_edit = now
                        await self._show(
                            active,
                            queued_message(record, self.style_label(record), update.position, update.eta, active.notes),
                        )
                elif update.kind == "started" and active.started_at is None:
                    active.started_at = now
                    record.state = "running"
                    await self._store.set_state(record.id, "running")
                    last_edit = now
                    await self._show(active, self._running(active, update.device))
                elif update.kind == "progress" and update.progress is not None:
                    active.last_progress = update.progress
                    if update.progress.preview:
                        active.last_preview = update.progress.preview
                    if now - last_edit >= progress_every:
                        last_edit = now
                        await self._show(active, self._running(active, update.device))
            await self._conclude(active)
        except Exception as exc:
            if isinstance(exc, (OSError, StoreFailed)):
                log.error("following job %s failed on a storage fault: %s", record.id, exc)
            else:
                log.exception("following job %s failed", record.id)
            if active.job.state in ("queued", "running"):
                active.job.cancel()
            await self._break_down(record)
        finally:
            self._active.pop(record.id, None)

    async def _break_down(self, record: JobRecord) -> None:
        """A job whose following failed on a fault: fail it and tell its requester, as far as the store lets us.

        If even that fails, the store still says the job is open, and the orphan check takes it up.
        """
        if record.is_final and record.summary is not None:
            # The result is stored and recorded: only its delivery failed, which the sweep retries.
            return
        record.state, record.error, record.summary = "failed", BROKE_DOWN, None
        try:
            await self._store.fail(record.id, "failed", record.error)
            self._metrics.jobs.labels(record.state).inc()
            await self.deliver(record)
        except Exception as exc:
            log.error("could not fail job %s either (%s); the orphan check will retry", record.id, exc)

    def _running(self, active: ActiveJob, device: str | None) -> Outgoing:
        progress = active.last_progress
        if progress is not None and progress.preview is None and active.last_preview is not None:
            # Previews come less often than progress; keep showing the last one rather than none.
            progress = dataclasses.replace(progress, preview=active.last_preview)
        elapsed = time.monotonic() - active.started_at if active.started_at is not None else 0.0
        return running_message(
            active.record,
            self.style_label(active.record),
            progress,
            device=device or active.job.device,
            elapsed=elapsed,
            notes=active.notes,
        )

    async def _show(self, active: ActiveJob, message: Outgoing) -> None:
        if not active.pausing:
            await self._delivery.edit_status(active.record, message)

    async def _conclude(self, active: ActiveJob) -> None:
        record, job = active.record, active.job
        if job.state == "done":
            result = await job.result()
            png = await asyncio.to_thread(encode_image, result.image, "png")
            await asyncio.to_thread(self._blobs.put_result, record.id, png)
            summary = ResultSummary.from_result(result)
            await self._store.finish(record.id, summary)
            record.state, record.summary = "finished", summary
        elif job.state == "failed":
            record.state, record.error = "failed", job.error or "The job failed."
            await self._store.fail(record.id, "failed", record.error)
        elif active.pausing and active.cancel_reason is None:
            record.state = "queued"
            await self._store.set_state(record.id, "queued")
            await self._delivery.edit_status(record, paused_message(record, self.style_label(record)))
            return
        else:
            record.state, record.error = "cancelled", active.cancel_reason or "The job was cancelled."
            await self._store.fail(record.id, "cancelled", record.error)
        self._metrics.jobs.labels(record.state).inc()
        self._metrics.duration.observe(max(0.0, time.time() - record.created_at))
        await self.deliver(record)

    async def _sources(self, record: JobRecord) -> tuple[Path, Path, float]:
        """The job's content and style files, and the content's aspect, read off the event loop."""
        content = self._blobs.source_path(record.content_blob)
        if record.style_ref.startswith(PRESET_PREFIX):
            key = record.style_ref[len(PRESET_PREFIX) :]
            preset = self._presets.get(key)
            if preset is None:
                raise SourceMissing(f"the preset `{key}` is no longer offered")
            style = preset.path
        else:
            style = self._blobs.source_path(record.style_ref[len(BLOB_PREFIX) :])
        max_pixels = self._config.downloads.max_pixels
        try:
            aspect = await asyncio.to_thread(_aspect, content, style, max_pixels)
        except FileNotFoundError:
            raise SourceMissing("its source images are no longer stored") from None
        return content, style, aspect

    # Control

    def cancel(self, job_id: str, reason: str) -> bool:
        """Cancel a queued or running job; False when it is not (or no longer) cancellable."""
        active = self._active.get(job_id)
        if active is None or active.job.state not in ("queued", "running"):
            return False
        active.cancel_reason = reason
        return active.job.cancel()

    # Final answers

    async def deliver(self, record: JobRecord) -> None:
        """Build and deliver the final answer of a job that ended."""
        if record.state == "finished" and record.summary is not None:
            png = await asyncio.to_thread(self._blobs.result, record.id)
            if png is not None:
                stem = f"stylized-{record.id[:8]}"
                # The edited answer carries the requester's own upload limit; a channel post only the server's.
                image = await asyncio.to_thread(fit_upload, png, record.upload_limit, stem)
                channel_limit = channel_upload_limit(record.upload_limit, self._delivery.server_upload_limit(record))
                channel_image = image
                if channel_limit < record.upload_limit:
                    channel_image = await asyncio.to_thread(fit_upload, png, channel_limit, stem)
                summary, label = record.summary, self.style_label(record)
                settings = await self._store.guild_settings(record.guild_id) if record.guild_id else None
                spoiler = bool(settings and settings.spoilers)
                await self._delivery.deliver(
                    record,
                    lambda mention: result_message(
                        record, label, summary, channel_image if mention else image, mention=mention, spoiler=spoiler
                    ),
                    ready_ping(record),
                )
                return
            record.state, record.error = "failed", "The finished image was lost before it could be sent."
            await self._store.fail(record.id, "failed", record.error)
        error = record.error or "The job failed."
        if record.state == "cancelled":
            await self._delivery.deliver(record, lambda mention: cancelled_message(record, error, mention=mention))
        else:
            await self._delivery.deliver(
                record, lambda mention: failed_message(record, error, mention=mention), ready_ping(record)
            )

    def _deliver_later(self, record: JobRecord) -> None:
        if record.id in self._delivering:
            return
        task = asyncio.create_task(self.deliver(record), name=f"deliver-{record.id}")
        self._delivering[record.id] = task
        task.add_done_callback(lambda _: self._delivering.pop(record.id, None))

    # Restarts

    async def resume(self) -> None:
        """Re-queue every unfinished job in the store and deliver every undelivered answer.

        Then check for orphaned jobs every ``storage.orphan_check_s`` until :meth:`stop`.
        """
        await self._take_up(await self._store.open_jobs(), "Resumed after a restart.")
        if self._orphan_watch is None:
            self._orphan_watch = asyncio.create_task(self._watch_orphans(), name="orphan-check")

    async def _take_up(self, records: list[JobRecord], note: str) -> None:
        """Deliver the final answers of ``records`` that have one, and start the others again."""
        for record in records:
            if record.id in self._active or record.id in self._submitting or self.stopping:
                continue
            if record.is_final:
                self._deliver_later(record)
                continue
            try:
                active = await self.submit(record, [note])
            except (PoolError, SourceMissing) as exc:
                record.state, record.error = "failed", f"Your job could not be started again: {exc}"
                await self._store.fail(record.id, "failed", record.error)
                self._deliver_later(record)
                continue
            await self.follow(active)

    async def _watch_orphans(self) -> None:
        interval = self._config.storage.orphan_check_s
        while True:
            await asyncio.sleep(interval)
            try:
                await self.take_up_orphans(older_than_s=interval)
            except Exception:
                log.exception("checking for orphaned jobs failed")

    async def take_up_orphans(self, older_than_s: float) -> None:
        """Start again (or deliver) open jobs nobody follows that were last changed ``older_than_s`` ago.

        The age keeps a job that is being accepted right now (stored, not yet queued) out of it.
        """
        cutoff = time.time() - older_than_s
        orphans = [
            record
            for record in await self._store.open_jobs()
            if record.updated_at < cutoff and record.id not in self._active and record.id not in self._delivering
        ]
        for record in orphans:
            log.warning("job %s (%s) was left unfollowed; taking it up again", record.id, record.state)
        await self._take_up(orphans, "Restarted after a problem on my side.")

    async def sweep(self) -> None:
        """Periodic upkeep: retry answers that could not be delivered yet, prune old jobs and files."""
        for record in await self._store.open_jobs():
            if record.is_final and record.id not in self._active:
                self._deliver_later(record)
        cutoff = time.time() - self._config.storage.retention_hours * 3600
        pruned = await self._store.prune(cutoff)
        if pruned:
            await asyncio.to_thread(self._blobs.delete_results, pruned)
        keep = await self._store.referenced_blobs()
        removed = await asyncio.to_thread(self._blobs.delete_sources_except, keep)
        removed += await asyncio.to_thread(self._blobs.delete_stale_temporaries)
        if pruned or removed:
            log.info("pruned %d old jobs and %d unused or temporary files", len(pruned), removed)

    async def stop(self, grace_s: float) -> None:
        """Stop taking jobs; let running ones finish for ``grace_s``, then pause everything left."""
        self.stopping = True
        if self._orphan_watch is not None:
            self._orphan_watch.cancel()
        for active in list(self._active.values()):
            if active.job.state == "queued":
                active.pausing = True
                active.job.cancel()
        running = [active.task for active in self._active.values() if active.task is not None]
        if running and grace_s > 0:
            await asyncio.wait(running, timeout=grace_s)
        for active in list(self._active.values()):
            active.pausing = True
            active.job.cancel()
        waiting: list[asyncio.Task[Any]] = [a.task for a in self._active.values() if a.task is not None]
        waiting.extend(self._delivering.values())
        if waiting:
            await asyncio.wait(waiting, timeout=self._pool.config.kill_grace_s + 5)


def _aspect(content: Path, style: Path, max_pixels: int) -> float:
    """The content's short side over its long side; raises FileNotFoundError when either file is gone."""
    if not style.is_file():
        raise FileNotFoundError(style)
    try:
        info = probe_image(content.read_bytes(), max_pixels=max_pixels)
    except ImageError:
        # The worker explains what is wrong with the image; the estimate assumes the worst shape.
        return 1.0
    return min(info.width, info.height) / max(info.width, info.height)
