"""REST routes about the bot itself: its user, the gateway URL, its application and its commands."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from .errors import INVALID_FORM_BODY, UNKNOWN_USER, RestError, json_response
from .rest import RestApi, RestRequest, no_content
from .validation import FormErrors, check_command, check_commands

if TYPE_CHECKING:
    from .server import FakeDiscord

UNKNOWN_APPLICATION_COMMAND = 10063
UNKNOWN_APPLICATION = 10002
MISSING_ACCESS = 50001


class ApplicationRoutes:
    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake

    def register(self, api: RestApi) -> None:
        api.add("GET", "/users/@me", self.me)
        api.add("GET", "/users/{user_id}", self.user)
        api.add("GET", "/gateway", self.gateway, auth=False)
        api.add("GET", "/gateway/bot", self.gateway_bot)
        api.add("GET", "/oauth2/applications/@me", self.application)
        api.add("GET", "/applications/@me", self.application)
        for prefix in ("/applications/{application_id}", "/applications/{application_id}/guilds/{guild_id}"):
            api.add("GET", prefix + "/commands", self.list_commands)
            api.add("PUT", prefix + "/commands", self.overwrite_commands)
            api.add("POST", prefix + "/commands", self.upsert_command)
            api.add("GET", prefix + "/commands/{command_id}", self.get_command)
            api.add("PATCH", prefix + "/commands/{command_id}", self.edit_command)
            api.add("DELETE", prefix + "/commands/{command_id}", self.delete_command)

    async def me(self, request: RestRequest) -> web.Response:
        return json_response(self.fake.world.bot.payload() | {"verified": True, "mfa_enabled": False})

    async def user(self, request: RestRequest) -> web.Response:
        user = self.fake.world.users.get(int(request.params["user_id"]))
        if user is None:
            raise RestError(404, UNKNOWN_USER, "Unknown User")
        return json_response(user.payload())

    async def gateway(self, request: RestRequest) -> web.Response:
        return json_response({"url": self.fake.gateway_url})

    async def gateway_bot(self, request: RestRequest) -> web.Response:
        limit = {"total": 1000, "remaining": 1000 - self.fake.gateway.identifies, "reset_after": 86_400_000,
                 "max_concurrency": 1}
        return json_response({"url": self.fake.gateway_url, "shards": self.fake.gateway.recommended_shards,
                              "session_start_limit": limit})

    async def application(self, request: RestRequest) -> web.Response:
        return json_response(self.fake.world.application_payload())

    async def list_commands(self, request: RestRequest) -> web.Response:
        return json_response(self.fake.commands.list(self._scope(request)))

    async def overwrite_commands(self, request: RestRequest) -> web.Response:
        scope = self._scope(request)
        definitions = request.body.json
        errors = FormErrors()
        if not isinstance(definitions, list):
            errors.add((), "LIST_TYPE_CONVERT", "Must be an array of application commands.")
        else:
            check_commands(definitions, errors)
        if errors:
            raise RestError(400, INVALID_FORM_BODY, "Invalid Form Body", errors.tree)
        return json_response(self.fake.commands.overwrite(scope, definitions))  # type: ignore[arg-type]

    async def upsert_command(self, request: RestRequest) -> web.Response:
        scope = self._scope(request)
        errors = FormErrors()
        check_command(request.json, errors)
        if errors:
            raise RestError(400, INVALID_FORM_BODY, "Invalid Form Body", errors.tree)
        return json_response(self.fake.commands.upsert(scope, request.json), status=201)

    async def get_command(self, request: RestRequest) -> web.Response:
        return json_response(self._command(request))

    async def edit_command(self, request: RestRequest) -> web.Response:
        command = self._command(request) | request.json
        return json_response(self.fake.commands.upsert(self._scope(request), command))

    async def delete_command(self, request: RestRequest) -> web.Response:
        self._command(request)
        self.fake.commands.delete(self._scope(request), int(request.params["command_id"]))
        return no_content()

    def _command(self, request: RestRequest) -> dict:
        command = self.fake.commands.get_by_id(self._scope(request), int(request.params["command_id"]))
        if command is None:
            raise RestError(404, UNKNOWN_APPLICATION_COMMAND, "Unknown application command")
        return command

    def _scope(self, request: RestRequest) -> int | None:
        if int(request.params["application_id"]) != self.fake.world.application_id:
            raise RestError(404, UNKNOWN_APPLICATION, "Unknown Application")
        guild_id = request.params.get("guild_id")
        if guild_id is None:
            return None
        if int(guild_id) not in self.fake.world.guilds:
            raise RestError(403, MISSING_ACCESS, "Missing Access")
        return int(guild_id)
