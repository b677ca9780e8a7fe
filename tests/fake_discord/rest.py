"""The REST API front door: routing, authentication, fault injection, recording and unknown-route reporting."""

from __future__ import annotations

import logging
import re
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from multidict import CIMultiDictProxy, MultiDictProxy

from .errors import INVALID_FORM_BODY, UNAUTHORIZED, RestError, discord_error, json_response
from .faults import FaultInjector
from .multipart import RequestBody, UploadedFile, read_body
from .waiting import Changes

log = logging.getLogger("fake_discord.rest")


@dataclass
class RestRequest:
    """What a route handler gets: the API path (after ``/api/v10``), its parameters, query and parsed body."""

    method: str
    path: str
    params: dict[str, str]
    query: MultiDictProxy[str]
    headers: CIMultiDictProxy[str]
    body: RequestBody

    @property
    def json(self) -> dict:
        return self.body.json if isinstance(self.body.json, dict) else {}

    @property
    def files(self) -> list[UploadedFile]:
        return self.body.files

    def flag(self, name: str) -> bool:
        """A boolean query parameter as discord.py sends them ("1"/"true")."""
        return self.query.get(name, "").lower() in ("1", "true")


Handler = Callable[[RestRequest], Awaitable[web.StreamResponse]]


@dataclass
class RecordedRequest:
    """One request the fake received on its REST API."""

    method: str
    path: str
    query: dict[str, str]
    json: object
    files: list[UploadedFile]
    started_at: float
    finished_at: float | None = None
    status: int | None = None
    route: str | None = None
    fault: str | None = None


@dataclass
class Route:
    method: str
    pattern: str
    regex: re.Pattern[str]
    handler: Handler
    auth: bool


@dataclass
class RestApi:
    """Dispatches ``/api/v10/...`` requests to registered handlers; records every request."""

    token: str
    faults: FaultInjector
    changes: Changes
    routes: list[Route] = field(default_factory=list)
    requests: list[RecordedRequest] = field(default_factory=list)
    unknown_routes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def add(self, method: str, pattern: str, handler: Handler, *, auth: bool = True) -> None:
        """Register ``pattern`` (``{name}`` matches one path segment); earlier registrations win."""
        regex = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$")
        self.routes.append(Route(method, pattern, regex, handler, auth))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"]
        body = await read_body(request)
        record = RecordedRequest(request.method, path, dict(request.query), body.json, body.files, time.monotonic())
        self.requests.append(record)
        try:
            response = await self._answer(request, path, body, record)
        except RestError as exc:
            response = exc.response()
        except Exception:
            # A bug in the fake: answer 400 (discord.py does not retry it) and keep the traceback for the test.
            trace = traceback.format_exc()
            self.errors.append(f"{request.method} {path}\n{trace}")
            log.error("fake_discord failed handling %s %s:\n%s", request.method, path, trace)
            response = discord_error(400, 0, f"fake_discord internal error handling {request.method} {path}")
        record.status = response.status
        record.finished_at = time.monotonic()
        await self.changes.notify()
        return response

    async def _answer(self, request: web.Request, path: str, body: RequestBody, record: RecordedRequest) -> web.StreamResponse:
        rule = self.faults.take(request.method, path)
        if rule is not None:
            record.fault = f"injected {rule.status}"
            return rule.respond()
        for route in self.routes:
            if route.method != request.method:
                continue
            match = route.regex.match(path)
            if match is None:
                continue
            record.route = route.pattern
            if route.auth and request.headers.get("Authorization") != f"Bot {self.token}":
                return discord_error(401, UNAUTHORIZED, "401: Unauthorized")
            if body.problem:
                return discord_error(400, INVALID_FORM_BODY, f"Invalid Form Body: {body.problem}")
            rest_request = RestRequest(request.method, path, match.groupdict(), request.query, request.headers, body)
            return await route.handler(rest_request)
        description = f"{request.method} {path}"
        self.unknown_routes.append(description)
        log.error("fake_discord has no route for %s (add it to tests/fake_discord if discord.py needs it)", description)
        return json_response({"message": f"fake_discord: no route for {description}", "code": 0}, status=404)


def no_content() -> web.Response:
    return web.Response(status=204)
