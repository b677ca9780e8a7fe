"""REST routes on channels, their messages, guilds and members (bot-token authenticated)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from .errors import (MISSING_PERMISSIONS, UNKNOWN_CHANNEL, UNKNOWN_MEMBER, UNKNOWN_MESSAGE, UNKNOWN_USER, RestError,
                     json_response)
from .messages import FakeMessage
from .permissions import has
from .rest import RestApi, RestRequest, no_content
from .world import FakeChannel, FakeGuild

if TYPE_CHECKING:
    from .server import FakeDiscord

UNKNOWN_GUILD = 10004
CANNOT_EDIT_OTHERS = 50005


class ChannelRoutes:
    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake

    def register(self, api: RestApi) -> None:
        api.add("GET", "/channels/{channel_id}", self.get_channel)
        api.add("GET", "/channels/{channel_id}/messages", self.history)
        api.add("POST", "/channels/{channel_id}/messages", self.send)
        api.add("GET", "/channels/{channel_id}/messages/{message_id}", self.get_message)
        api.add("PATCH", "/channels/{channel_id}/messages/{message_id}", self.edit)
        api.add("DELETE", "/channels/{channel_id}/messages/{message_id}", self.delete)
        api.add("POST", "/channels/{channel_id}/typing", self.typing)
        api.add("POST", "/users/@me/channels", self.open_dm)
        api.add("GET", "/guilds/{guild_id}", self.get_guild)
        api.add("GET", "/guilds/{guild_id}/channels", self.guild_channels)
        api.add("GET", "/guilds/{guild_id}/members/{user_id}", self.get_member)

    async def get_channel(self, request: RestRequest) -> web.Response:
        return json_response(self._channel(request).payload())

    async def history(self, request: RestRequest) -> web.Response:
        channel = self._channel(request)
        self._require(channel, "view_channel", "read_message_history")
        limit = min(int(request.query.get("limit", 50)), 100)
        before = int(request.query.get("before", 0)) or None
        after = int(request.query.get("after", 0)) or None
        visible = [m for m in self.fake.store.in_channel(channel.id) if not m.ephemeral]
        if before is not None:
            visible = [m for m in visible if m.id < before]
        if after is not None:
            visible = [m for m in visible if m.id > after]
        newest_first = sorted(visible, key=lambda m: m.id, reverse=True)[:limit]
        return json_response([m.payload(self.fake.world.bot.payload()) for m in newest_first])

    async def send(self, request: RestRequest) -> web.Response:
        channel = self._channel(request)
        self._require(channel, "view_channel", "send_messages", *(["attach_files"] if request.files else []))
        store = self.fake.store
        message = store.duplicate_of(channel.id, request.json)
        if message is None:
            message = store.create(channel.id, request.json, request.files, kind="channel")
            store.remember_nonce(message)
        return json_response(message.payload(self.fake.world.bot.payload()))

    async def get_message(self, request: RestRequest) -> web.Response:
        self._require(self._channel(request), "view_channel", "read_message_history")
        return json_response(self._message(request).payload(self.fake.world.bot.payload()))

    async def edit(self, request: RestRequest) -> web.Response:
        message = self._message(request)
        if int(message.author["id"]) != self.fake.world.bot.id:
            raise RestError(403, CANNOT_EDIT_OTHERS, "Cannot edit a message authored by another user")
        self.fake.store.edit(message, request.json, request.files)
        return json_response(message.payload(self.fake.world.bot.payload()))

    async def delete(self, request: RestRequest) -> web.Response:
        self.fake.store.delete(self._message(request))
        return no_content()

    async def typing(self, request: RestRequest) -> web.Response:
        self._channel(request)
        return no_content()

    async def open_dm(self, request: RestRequest) -> web.Response:
        user = self.fake.world.users.get(int(request.json.get("recipient_id", 0)))
        if user is None:
            raise RestError(404, UNKNOWN_USER, "Unknown User")
        return json_response(self.fake.world.dm_channel(user).payload())

    async def get_guild(self, request: RestRequest) -> web.Response:
        return json_response(self._guild(request).base_payload())

    async def guild_channels(self, request: RestRequest) -> web.Response:
        return json_response([c.payload() for c in self._guild(request).channels.values()])

    async def get_member(self, request: RestRequest) -> web.Response:
        guild = self._guild(request)
        user = self.fake.world.users.get(int(request.params["user_id"]))
        if user is None or user.id not in guild.member_roles:
            raise RestError(404, UNKNOWN_MEMBER, "Unknown Member")
        return json_response(guild.member_payload(user))

    def _channel(self, request: RestRequest) -> FakeChannel:
        channel = self.fake.world.channel_by_id(int(request.params["channel_id"]))
        if channel is None:
            raise RestError(404, UNKNOWN_CHANNEL, "Unknown Channel")
        return channel

    def _guild(self, request: RestRequest) -> FakeGuild:
        guild = self.fake.world.guilds.get(int(request.params["guild_id"]))
        if guild is None:
            raise RestError(404, UNKNOWN_GUILD, "Unknown Guild")
        return guild

    def _message(self, request: RestRequest) -> FakeMessage:
        channel = self._channel(request)
        message = self.fake.store.get(int(request.params["message_id"]))
        if message is None or message.channel_id != channel.id or message.ephemeral:
            raise RestError(404, UNKNOWN_MESSAGE, "Unknown Message")
        return message

    def _require(self, channel: FakeChannel, *names: str) -> None:
        if channel.guild_id is None:
            return
        granted = self.fake.world.guilds[channel.guild_id].permissions_of(self.fake.world.bot)
        missing = [name for name in names if not has(granted, name)]
        if missing:
            raise RestError(403, MISSING_PERMISSIONS, f"Missing Permissions ({', '.join(missing)})")
