"""The Discord client: wires config, store, pool, runner, commands and the HTTP server together."""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp
import discord
import yarl
from discord import app_commands

from bot.blobs import BlobStore
from bot.commands import register
from bot.commands.buttons import handle_job_button
from bot.config import Config, DiscordConfig
from bot.delivery import Delivery
from bot.http_server import HealthServer
from bot.intake import Intake
from bot.metrics import Metrics
from bot.presets import PresetCatalogue
from bot.runner import JobRunner
from bot.store import JobStore
from bot.views import JobButton
from nst_engine.pool import Pool, PoolConfig

log = logging.getLogger("bot")


def point_discord_at(config: DiscordConfig) -> None:
    """Send discord.py's REST calls (webhooks included) and gateway connection where the config says."""
    discord.http.Route.BASE = config.api_base_url.rstrip("/")
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(config.gateway_url)


def pool_config(config: Config) -> PoolConfig:
    """The executor pool's settings, from the ``[pool]`` and ``[limits]`` sections."""
    pool = config.pool
    return PoolConfig(
        devices=pool.devices or None,
        workers_per_device=pool.workers_per_device,
        queue_size=config.limits.queue_size,
        per_owner_limit=config.limits.max_jobs_per_user,
        job_timeout_s=pool.job_timeout_s,
        preview_interval_s=pool.preview_interval_s,
        heartbeat_timeout_s=pool.heartbeat_timeout_s,
        weights=pool.weights,
        cpu_threads=pool.cpu_threads or None,
        progress_every=pool.progress_every,
    )


class NSTBot(discord.Client):
    """The style-transfer bot. Services start in :meth:`setup_hook` and stop in :meth:`close`."""

    store: JobStore
    blobs: BlobStore
    pool: Pool
    runner: JobRunner
    delivery: Delivery
    http_session: aiohttp.ClientSession

    def __init__(self, config: Config) -> None:
        # The bot never joins voice; discord.py would otherwise warn at every start that it cannot.
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False
        intents = discord.Intents.none()
        intents.guilds = True
        super().__init__(
            intents=intents,
            allowed_mentions=discord.AllowedMentions.none(),
            # Rate limits longer than this raise discord.RateLimited instead of sleeping (see bot.delivery).
            max_ratelimit_timeout=config.delivery.max_rate_limit_wait_s,
        )
        self.config = config
        self.tree = app_commands.CommandTree(self)
        self.tree.on_error = self._on_command_error
        self.presets = PresetCatalogue(config.presets.enabled, config.presets.extra)
        self.metrics = Metrics()
        self.intake = Intake(self)
        self.started_at = time.monotonic()
        self.health_server: HealthServer | None = None
        self._maintenance: asyncio.Task[None] | None = None
        self._stopping: asyncio.Task[None] | None = None

    async def setup_hook(self) -> None:
        config = self.config
        self.store = await JobStore.open(config.storage.database)
        self.blobs = await asyncio.to_thread(BlobStore, config.storage.data_dir)
        if config.http.enabled:
            self.health_server = HealthServer(config.http, self.health, self.metrics, self.refresh_metrics)
            await self.health_server.start()
        log.info("starting the worker pool")
        self.pool = await Pool.start(pool_config(config))
        self.http_session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        self.delivery = Delivery(self, self.store, config.delivery)
        self.runner = JobRunner(
            config=config,
            pool=self.pool,
            store=self.store,
            blobs=self.blobs,
            delivery=self.delivery,
            presets=self.presets,
            metrics=self.metrics,
        )
        self.add_dynamic_items(JobButton)
        register(self.tree)
        if config.discord.sync_commands:
            await self._sync_commands()
        await self.runner.resume()
        self._maintenance = asyncio.create_task(self._maintain(), name="maintenance")

    async def _sync_commands(self) -> None:
        guild_id = self.config.discord.dev_guild_id
        if guild_id:
            guild = discord.Object(guild_id)
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
            log.info("synced %d commands to the development server %s", len(synced), guild_id)
        else:
            synced = await self.tree.sync()
            log.info("synced %d commands globally (Discord may take a while to show changes)", len(synced))

    async def _maintain(self) -> None:
        while True:
            try:
                await self.runner.sweep()
            except Exception:
                log.exception("periodic upkeep failed")
            await asyncio.sleep(self.config.storage.prune_interval_s)

    async def on_ready(self) -> None:
        log.info("connected as %s to %d servers", self.user, len(self.guilds))

    async def on_guild_join(self, guild: discord.Guild) -> None:
        allowlist = self.config.discord.guild_allowlist
        if allowlist and guild.id not in allowlist:
            log.warning("added to server %s (%s), which is not on discord.guild_allowlist", guild.name, guild.id)

    async def handle_job_button(self, action: str, job_id: str, interaction: discord.Interaction) -> None:
        """Called by :class:`bot.views.JobButton` for every press of one of our buttons."""
        try:
            await handle_job_button(self, action, job_id, interaction)
        except Exception as exc:
            await self._report_failure(interaction, exc)

    async def _on_command_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        await self._report_failure(interaction, error)

    async def _report_failure(self, interaction: discord.Interaction, error: Exception) -> None:
        log.error("unexpected error handling an interaction", exc_info=error)
        message = "⚠️ Something went wrong on my side. Please try again in a moment."
        try:
            if interaction.response.is_done():
                await interaction.edit_original_response(content=message)
            else:
                await interaction.response.send_message(message, ephemeral=True)
        except discord.HTTPException:
            log.warning("could not tell user %s about the error", interaction.user.id)

    def health(self) -> dict[str, bool]:
        """The checks behind /healthz."""
        gateway = self.is_ready() and not self.is_closed() and self.ws is not None and self.ws.open
        pool = getattr(self, "pool", None)
        return {"gateway": bool(gateway), "pool": bool(pool is not None and pool.stats().alive)}

    def refresh_metrics(self) -> None:
        pool = getattr(self, "pool", None)
        if pool is not None:
            self.metrics.refresh(pool.stats())

    async def close(self) -> None:
        """Stop taking jobs, finish or pause running ones, then shut every service down."""
        if self._stopping is None:
            self._stopping = asyncio.create_task(self._shut_down())
        await asyncio.shield(self._stopping)

    async def _shut_down(self) -> None:
        log.info("shutting down")
        if self._maintenance is not None:
            self._maintenance.cancel()
        runner = getattr(self, "runner", None)
        if runner is not None:
            await runner.stop(self.config.shutdown.grace_s)
        pool = getattr(self, "pool", None)
        if pool is not None:
            await pool.close(drain=False)
        session = getattr(self, "http_session", None)
        if session is not None:
            await session.close()
        if self.health_server is not None:
            await self.health_server.stop()
        await super().close()
        store = getattr(self, "store", None)
        if store is not None:
            await store.close()
        log.info("stopped")
