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
from bot.command_errors import INTERNAL_ERROR, explain
from bot.command_sync import sync_if_changed
from bot.commands import register
from bot.commands.buttons import handle_job_button
from bot.config import Config, DiscordConfig
from bot.datalock import DataFolderLock
from bot.delivery import Delivery
from bot.http_server import HealthServer
from bot.intake import Intake
from bot.looplag import watch_loop_lag
from bot.metrics import Metrics
from bot.presets import PresetCatalogue
from bot.runner import JobRunner
from bot.store import JobStore
from bot.views import JobButton
from nst_engine.pool import Pool, PoolConfig, RayConfig

log = logging.getLogger("bot")


def point_discord_at(config: DiscordConfig) -> None:
    """Send discord.py's REST calls (webhooks included) and gateway connection where the config says."""
    discord.http.Route.BASE = config.api_base_url.rstrip("/")
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(config.gateway_url)


def pool_config(config: Config) -> PoolConfig:
    """The executor pool's settings, from the ``[pool]`` and ``[limits]`` sections."""
    pool = config.pool
    return PoolConfig(
        backend=pool.backend,  # type: ignore[arg-type]  # checked by the config loader
        ray=RayConfig(
            address=pool.ray.address,
            workers_per_gpu=pool.ray.workers_per_gpu,
            cpu_workers=pool.ray.cpu_workers,
            namespace=pool.ray.namespace,
        ),
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
        max_batch=pool.max_batch,
        shape_multiple=pool.shape_multiple,
    )


class NSTBot(discord.Client):
    """The style-transfer bot. Services start in :meth:`setup_hook` and stop in :meth:`close`.

    This class holds one gateway connection; :class:`ShardedNSTBot` runs the same bot on
    discord.py's AutoShardedClient.  :func:`create_bot` picks by ``[discord] shards``.
    """

    store: JobStore
    blobs: BlobStore
    pool: Pool
    runner: JobRunner
    delivery: Delivery
    http_session: aiohttp.ClientSession

    def __init__(self, config: Config, *, force_sync: bool = False) -> None:
        # The bot never joins voice; discord.py would otherwise warn at every start that it cannot.
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False
        intents = discord.Intents.none()
        intents.guilds = True
        super().__init__(
            intents=intents,
            **shard_options(config.discord),
            allowed_mentions=discord.AllowedMentions.none(),
            # Rate limits longer than this raise discord.RateLimited instead of sleeping (see bot.delivery).
            max_ratelimit_timeout=config.delivery.max_rate_limit_wait_s,
        )
        self.config = config
        self.force_sync = force_sync
        self.tree = app_commands.CommandTree(self)
        self.tree.on_error = self._on_command_error
        self.presets = PresetCatalogue(config.presets.enabled, config.presets.extra)
        self.metrics = Metrics()
        self.intake = Intake(self)
        self.started_at = time.monotonic()
        self.health_server: HealthServer | None = None
        self._maintenance: asyncio.Task[None] | None = None
        self._lag_watch: asyncio.Task[None] | None = None
        self._stopping: asyncio.Task[None] | None = None
        self.data_lock: DataFolderLock | None = None

    async def setup_hook(self) -> None:
        config = self.config
        # Before anything else: a second bot on the same folder must stop here, before resuming any job.
        self.data_lock = await asyncio.to_thread(DataFolderLock.acquire, config.storage.data_dir)
        self.store = await JobStore.open(config.storage.database)
        self.blobs = await asyncio.to_thread(BlobStore, config.storage.data_dir)
        if config.http.enabled:
            self.health_server = HealthServer(
                config.http, self.health, self.metrics, self.refresh_metrics, self.describe_pool
            )
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
        register(self.tree, config)
        if config.discord.sync_commands or self.force_sync:
            await sync_if_changed(self.tree, self.store, guild_id=config.discord.dev_guild_id, force=self.force_sync)
        await self.runner.resume()
        self._maintenance = asyncio.create_task(self._maintain(), name="maintenance")
        self._lag_watch = asyncio.create_task(watch_loop_lag(self.metrics.loop_lag.observe), name="loop-lag")

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
            await self.report_failure(interaction, exc)

    async def _on_command_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        message = explain(error)
        if message is None:
            await self.report_failure(interaction, error)
            return
        log.info("command from user %s not run: %s", interaction.user.id, error)
        await self._tell(interaction, message)

    async def report_failure(self, interaction: discord.Interaction, error: Exception) -> None:
        """Log a bug in handling ``interaction`` and tell its user, privately, that something went wrong."""
        log.error("unexpected error handling an interaction", exc_info=error)
        await self._tell(interaction, INTERNAL_ERROR)

    async def _tell(self, interaction: discord.Interaction, message: str) -> None:
        """Answer ``interaction`` privately (or replace its deferred answer) with ``message``."""
        try:
            if interaction.response.is_done():
                await interaction.edit_original_response(content=message)
            else:
                await interaction.response.send_message(message, ephemeral=True)
        except discord.HTTPException:
            log.warning("could not tell user %s about the error", interaction.user.id)

    def shard_connections(self) -> dict[int, bool]:
        """Whether each gateway connection is open, by shard id (just 0 without sharding)."""
        return {0: self.ws is not None and self.ws.open}

    def health(self) -> dict[str, bool]:
        """The checks behind /healthz: the gateway (every shard), each shard when sharded, and the pool."""
        shards = self.shard_connections()
        checks = {"gateway": self.is_ready() and not self.is_closed() and all(shards.values())}
        if isinstance(self, discord.AutoShardedClient):
            checks.update({f"shard_{shard_id}": connected for shard_id, connected in sorted(shards.items())})
        pool = getattr(self, "pool", None)
        checks["pool"] = bool(pool is not None and pool.stats().alive)
        return checks

    def describe_pool(self) -> dict[str, object]:
        """Where a cluster pool runs, for /healthz: its backend and the warm workers on each node.
        Nothing for the local pool, whose one machine is the one answering."""
        if self.config.pool.backend == "local":
            return {}
        pool = getattr(self, "pool", None)
        if pool is None:
            return {"backend": self.config.pool.backend, "nodes": {}}
        stats = pool.stats()
        return {"backend": stats.backend, "nodes": stats.workers_by_node()}

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
        if self._lag_watch is not None:
            self._lag_watch.cancel()
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
        self.intake.close()
        store = getattr(self, "store", None)
        if store is not None:
            await store.close()
        if self.data_lock is not None:
            self.data_lock.release()
        log.info("stopped")


class ShardedNSTBot(NSTBot, discord.AutoShardedClient):
    """The bot on several gateway connections, one per shard (``[discord] shards = "auto"`` or a count)."""

    def shard_connections(self) -> dict[int, bool]:
        return {shard_id: not shard.is_closed() for shard_id, shard in self.shards.items()}


def shard_options(config: DiscordConfig) -> dict[str, int | None]:
    """The sharding arguments for the client: none, or a shard count (None: Discord's recommendation)."""
    if config.shards == 0:
        return {}
    return {"shard_count": None if config.shards == "auto" else int(config.shards)}


def create_bot(config: Config, *, force_sync: bool = False) -> NSTBot:
    """The bot, sharded or not as ``[discord] shards`` says."""
    cls = NSTBot if config.discord.shards == 0 else ShardedNSTBot
    return cls(config, force_sync=force_sync)
