"""REST fault injection: make matching requests fail or hit a rate limit before they reach a handler."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from aiohttp import web

from .errors import json_response


@dataclass
class FaultRule:
    """Answers the next ``count`` requests matching ``method`` and ``path`` (a regex searched in the API path)."""

    method: str
    path: re.Pattern[str]
    status: int
    count: int
    retry_after: float = 0.0
    is_global: bool = False
    from_proxy: bool = False
    body: object = None
    hits: int = 0

    @property
    def exhausted(self) -> bool:
        return self.hits >= self.count

    def matches(self, method: str, path: str) -> bool:
        return not self.exhausted and self.method in ("*", method) and self.path.search(path) is not None

    def respond(self) -> web.Response:
        self.hits += 1
        if self.status == 429:
            if self.from_proxy:
                return proxy_rate_limited(self.retry_after)
            return rate_limited(self.retry_after, is_global=self.is_global)
        body = self.body if self.body is not None else {"message": f"{self.status}: injected by fake_discord", "code": 0}
        return json_response(body, status=self.status)


def rate_limited(retry_after: float, *, is_global: bool = False) -> web.Response:
    """A 429 as Discord sends it; discord.py only retries when ``Via`` is present and the body is JSON."""
    headers = {
        "Via": "1.1 google",
        "Retry-After": str(max(1, round(retry_after))),
        "X-RateLimit-Limit": "5",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": f"{time.time() + retry_after:.3f}",
        "X-RateLimit-Reset-After": f"{retry_after:.3f}",
        "X-RateLimit-Bucket": "fake-bucket",
        "X-RateLimit-Scope": "global" if is_global else "user",
    }
    if is_global:
        headers["X-RateLimit-Global"] = "true"
    body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": is_global, "code": 0}
    return json_response(body, status=429, headers=headers)


def proxy_rate_limited(retry_after: float) -> web.Response:
    """A 429 from something in front of Discord (Cloudflare, an HTTP proxy): a plain-text body and a
    ``Retry-After`` header in whole seconds, no ``Via``. discord.py does not retry it; the caller gets it."""
    return web.Response(status=429, text="429 Too Many Requests", headers={"Retry-After": str(max(1, round(retry_after)))})


class FaultInjector:
    """Holds the active fault rules; the first matching rule answers a request."""

    def __init__(self) -> None:
        self.rules: list[FaultRule] = []

    def add(self, method: str, path_regex: str, status: int, count: int, **extra: object) -> FaultRule:
        rule = FaultRule(method.upper(), re.compile(path_regex), status, count, **extra)  # type: ignore[arg-type]
        self.rules.append(rule)
        return rule

    def take(self, method: str, path: str) -> FaultRule | None:
        for rule in self.rules:
            if rule.matches(method, path):
                return rule
        return None
