"""The bot's small HTTP server: /healthz for orchestrators, /metrics for Prometheus."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from bot.config import HttpConfig
from bot.metrics import Metrics

log = logging.getLogger("bot.http")

HealthCheck = Callable[[], dict[str, bool]]
Describe = Callable[[], dict[str, object]]


class HealthServer:
    """Serves ``/healthz`` (200 when every check passes, else 503) and ``/metrics``.

    ``/healthz`` answers the checks, plus whatever ``describe`` adds (e.g. where the pool runs).
    """

    def __init__(
        self,
        config: HttpConfig,
        health: HealthCheck,
        metrics: Metrics,
        refresh: Callable[[], None],
        describe: Describe = dict,
    ) -> None:
        self._config = config
        self._health = health
        self._describe = describe
        self._metrics = metrics
        self._refresh = refresh
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics_page)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._config.host, self._config.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        log.info("health and metrics on http://%s:%s", self._config.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, request: web.Request) -> web.Response:
        checks = self._health()
        status = 200 if all(checks.values()) else 503
        body = {**self._describe(), **checks}
        return web.Response(status=status, text=json.dumps(body), content_type="application/json")

    async def _metrics_page(self, request: web.Request) -> web.Response:
        self._refresh()
        return web.Response(body=self._metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})
