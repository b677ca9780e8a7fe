"""``FakeDiscord``: REST, gateway and CDN on 127.0.0.1, and the control API tests drive it with."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

from aiohttp import web

from .cdn import Cdn, CdnFault, sniff_content_type
from .commands import CommandRegistry
from .errors import InvalidInvocation, NotConnected
from .faults import FaultInjector, FaultRule
from .gateway import Gateway
from .ids import SnowflakeFactory
from .interactions import FakeInteraction, InteractionFactory
from .message_store import MessageStore
from .messages import FakeMessage
from .rest import RecordedRequest, RestApi
from .routes_application import ApplicationRoutes
from .routes_channels import ChannelRoutes
from .routes_interactions import InteractionRoutes
from .waiting import Changes
from .world import PUBLIC_THREAD, TEXT_CHANNEL, FakeChannel, FakeGuild, FakeUser, World

log = logging.getLogger("fake_discord")

API_PREFIX = "/api/v10"
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024


class FakeDiscord:
    """A local Discord for one test: ``async with FakeDiscord() as fake:``.

    It starts with an application and bot user, a guild "Test Guild" owned by ``fake.owner`` with a text channel
    ``#general``, and a user ``fake.user`` ("alice") with default permissions. Point a bot at ``api_base_url``
    and ``gateway_url`` and log in with ``token``.
    """

    def __init__(
        self,
        *,
        token: str = "fake-discord-bot-token",
        heartbeat_interval_ms: int = 41_250,
        token_ttl: float = 15 * 60.0,
        ack_deadline: float | None = 3.0,
        attachment_size_limit: int = DEFAULT_UPLOAD_LIMIT,
        allow_privileged_intents: bool = False,
        bot_name: str = "NST Bot",
        bot_permissions: object = None,
        host: str = "127.0.0.1",
        strict: bool = True,
    ) -> None:
        """``token_ttl``: seconds an interaction token works for webhooks (Discord: 15 min).
        ``ack_deadline``: seconds the bot has to answer the callback (Discord: 3 s; None disables).
        ``strict``: on exit, fail if the bot hit an unknown route or the fake itself raised."""
        self.token = token
        self.token_ttl = token_ttl
        self.ack_deadline = ack_deadline
        self.host = host
        self.strict = strict
        self.changes = Changes()
        self.ids = SnowflakeFactory()
        self.world = World(self.ids, bot_name=bot_name, bot_permissions=bot_permissions)
        self._closing = asyncio.Event()
        self.cdn = Cdn(self._closing)
        self.store = MessageStore(self.world, self.cdn, self.ids, attachment_size_limit=attachment_size_limit)
        self.commands = CommandRegistry(self.ids, self.world.application_id)
        self.faults = FaultInjector()
        self.gateway = Gateway(self.world, self.changes, token=token, heartbeat_interval_ms=heartbeat_interval_ms,
                               allow_privileged_intents=allow_privileged_intents)
        self.api = RestApi(token, self.faults, self.changes)
        for routes in (ApplicationRoutes(self), InteractionRoutes(self), ChannelRoutes(self)):
            routes.register(self.api)
        self.interaction_factory = InteractionFactory(self.world, self.changes,
                                                      attachment_size_limit=attachment_size_limit)
        self.interactions: dict[int, FakeInteraction] = {}
        self.interactions_by_token: dict[str, FakeInteraction] = {}
        self.port = 0
        self._runner: web.AppRunner | None = None
        self.user = self.add_user("alice")

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        await self.close()
        if self.strict and exc_type is None:
            self.assert_clean()

    async def start(self) -> None:
        """Listen on a free port of ``host``."""
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self.api.handle)
        app.router.add_get("/gateway", self.gateway.handle)
        app.router.add_get("/gateway-resume", self.gateway.handle)
        app.router.add_get("/attachments/{channel_id}/{attachment_id}/{filename}", self.cdn.serve)
        app.router.add_get("/proxy/attachments/{channel_id}/{attachment_id}/{filename}", self.cdn.serve)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        self.port = sock.getsockname()[1]
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        self.cdn.base_url = self.base_url
        self.gateway.url = self.gateway_url
        self.gateway.resume_url = f"ws://{self.host}:{self.port}/gateway-resume"
        log.info("fake Discord listening on %s", self.base_url)

    async def close(self) -> None:
        """Close bot connections and stop serving; slow CDN responses are cut short."""
        self._closing.set()
        await self.gateway.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def assert_clean(self) -> None:
        """Fail if the bot called a route the fake does not know, or the fake itself failed on a request."""
        problems = [f"unknown route: {route}" for route in self.api.unknown_routes]
        problems += [f"fake_discord error: {error}" for error in self.api.errors]
        if problems:
            raise AssertionError("fake_discord saw problems:\n" + "\n".join(problems))

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_base_url(self) -> str:
        """What ``discord.http.Route.BASE`` must be set to."""
        return self.base_url + API_PREFIX

    @property
    def gateway_url(self) -> str:
        """What ``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY`` must be set to (as a yarl.URL)."""
        return f"ws://{self.host}:{self.port}/gateway"

    @property
    def attachment_size_limit(self) -> int:
        """Upload limit per file, in bytes: sent to the bot as ``attachment_size_limit`` and enforced (413)."""
        return self.store.attachment_size_limit

    @attachment_size_limit.setter
    def attachment_size_limit(self, limit: int) -> None:
        self.store.attachment_size_limit = limit
        self.interaction_factory.attachment_size_limit = limit

    @contextlib.contextmanager
    def patch_discord_py(self) -> Iterator[None]:
        """Point discord.py in this process at the fake (for in-process clients), restoring it afterwards."""
        import discord.gateway
        import discord.http
        import yarl

        saved = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
        discord.http.Route.BASE = self.api_base_url
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)
        try:
            yield
        finally:
            discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = saved

    # --- people and places -------------------------------------------------------------------------------------

    @property
    def bot_user(self) -> FakeUser:
        return self.world.bot

    @property
    def application_id(self) -> int:
        return self.world.application_id

    @property
    def owner(self) -> FakeUser:
        """The owner of every guild (has all permissions)."""
        return self.world.owner

    @property
    def guild(self) -> FakeGuild:
        return self.world.guild

    @property
    def channel(self) -> FakeChannel:
        return self.world.channel

    def add_user(self, name: str, *, permissions: object = None) -> FakeUser:
        """A user in every guild. ``permissions``: an int, a discord.Permissions, or names such as
        ``["manage_messages"]`` / ``"manage_guild"``, granted through a role of the user's own."""
        user = self.world.add_user(name, permissions=permissions)
        if self.gateway.session is not None:
            for guild in self.world.guilds.values():
                for role_id in guild.member_roles[user.id]:
                    self.gateway.dispatch("GUILD_ROLE_CREATE",
                                          {"guild_id": str(guild.id), "role": guild.roles[role_id].payload()})
        return user

    def add_guild(self, name: str) -> FakeGuild:
        """Another guild with the bot in it (announced with GUILD_CREATE when a bot is connected)."""
        guild = self.world.add_guild(name)
        if self.gateway.session is not None:
            self.gateway.dispatch("GUILD_CREATE", guild.create_payload(self.world.members_of(guild)))
        return guild

    def add_channel(self, name: str, guild: FakeGuild | None = None, *, type: int = TEXT_CHANNEL) -> FakeChannel:
        """Another channel, text unless ``type`` says otherwise (2 voice, 4 category, 13 stage, 15 forum,
        16 media); announced with CHANNEL_CREATE when a bot is connected."""
        channel = self.world.add_channel(guild or self.guild, name, type=type)
        if self.gateway.session is not None:
            self.gateway.dispatch("CHANNEL_CREATE", channel.payload())
        return channel

    def add_thread(self, parent: FakeChannel, name: str) -> FakeChannel:
        """A public thread under ``parent`` (for a forum or media channel: a post), announced with THREAD_CREATE."""
        guild = self.world.guilds[parent.guild_id] if parent.guild_id else self.guild
        thread = self.world.add_channel(guild, name, type=PUBLIC_THREAD, parent=parent)
        if self.gateway.session is not None:
            self.gateway.dispatch("THREAD_CREATE", thread.payload() | {"newly_created": True})
        return thread

    # --- CDN ---------------------------------------------------------------------------------------------------

    def add_attachment(self, data: bytes, filename: str, content_type: str | None = None, *,
                       width: int | None = None, height: int | None = None, declared_size: int | None = None,
                       fault: CdnFault | None = None, channel_id: int | None = None, url: str | None = None) -> dict:
        """Serve ``data`` on the CDN and return the attachment payload to pass as a command option.

        ``content_type`` defaults to what the bytes look like; ``width``/``height``/``declared_size`` are what
        Discord claims (they may lie); ``fault`` makes the CDN misbehave; ``url`` replaces the CDN URL
        (e.g. a host the bot must not fetch from)."""
        attachment = self.cdn.store(
            self.ids.next(), channel_id or self.channel.id, data, filename,
            content_type if content_type is not None else sniff_content_type(data, filename),
            width=width, height=height, declared_size=declared_size, fault=fault, url=url,
        )
        return attachment.payload()

    # --- interactions ------------------------------------------------------------------------------------------

    async def invoke_command(self, name: str, options: dict[str, Any] | None = None, *, user: FakeUser | None = None,
                             guild: FakeGuild | None = None, channel: FakeChannel | None = None,
                             subcommand: str | None = None, locale: str = "en-US", validate: bool = True,
                             dm: bool = False) -> FakeInteraction:
        """Send a slash command as ``user`` (default ``fake.user``) in ``channel`` (default ``#general``).

        Options are checked against the registered command (names, types, required, choices, ranges) unless
        ``validate=False``; attachment options take dicts from ``add_attachment``, user options FakeUsers.
        ``subcommand`` is "sub" or "group sub". ``dm=True`` sends it from the user's DM with the bot."""
        user = user or self.user
        guild_, channel_ = self._where(guild, channel, user, dm)
        command = self._registered(name, guild_)
        interaction = self.interaction_factory.command(command, options or {}, user=user, guild=guild_,
                                                       channel=channel_, subcommand=subcommand, locale=locale,
                                                       validate=validate)
        await self._dispatch(interaction)
        return interaction

    async def autocomplete(self, name: str, options: dict[str, Any], focused: str, *, user: FakeUser | None = None,
                           guild: FakeGuild | None = None, channel: FakeChannel | None = None,
                           subcommand: str | None = None, locale: str = "en-US", dm: bool = False,
                           timeout: float = 10.0) -> list[dict]:
        """Send an autocomplete request for option ``focused`` (its current text in ``options``); returns the
        bot's choices. The interaction handle is in ``fake.interactions`` like any other."""
        user = user or self.user
        guild_, channel_ = self._where(guild, channel, user, dm)
        command = self._registered(name, guild_)
        interaction = self.interaction_factory.command(command, options, user=user, guild=guild_, channel=channel_,
                                                       subcommand=subcommand, locale=locale, validate=False,
                                                       focused=focused)
        await self._dispatch(interaction)
        return await interaction.wait_choices(timeout)

    async def press_button(self, message: FakeMessage | int, custom_id: str | None = None, *, label: str | None = None,
                           user: FakeUser | None = None, locale: str = "en-US") -> FakeInteraction:
        """Click a button (by ``custom_id`` or ``label``) on a message, as ``user`` (default ``fake.user``)."""
        user = user or self.user
        target = message if isinstance(message, FakeMessage) else self.store.messages.get(int(message))
        if target is None or target.deleted:
            raise InvalidInvocation(f"message {message} does not exist (or was deleted)")
        if custom_id is None and label is None:
            raise InvalidInvocation("press_button needs a custom_id or a label")
        button = target.button(label=label, custom_id=custom_id)
        if button.get("disabled"):
            raise InvalidInvocation(f"button {button.get('label')!r} on message {target.id} is disabled")
        if "custom_id" not in button:
            raise InvalidInvocation(f"button {button.get('label')!r} is a link or premium button; it sends no interaction")
        if target.ephemeral and target.interaction is not None and target.interaction.user.id != user.id:
            raise InvalidInvocation(f"message {target.id} is ephemeral: only {target.interaction.user.name} can see it")
        interaction = self.interaction_factory.component(target, button["custom_id"], 2, None, user=user,
                                                         bot_user=self.world.bot.payload(), locale=locale)
        await self._dispatch(interaction)
        return interaction

    def post_message(self, content: str = "", *, files: list[dict] | None = None, user: FakeUser | None = None,
                     channel: FakeChannel | None = None) -> FakeMessage:
        """A message ``user`` (default ``fake.user``) posts in ``channel`` (default ``#general``), with attachments
        from ``add_attachment``. The bot does not receive it (it has no message intent); message commands can
        target it."""
        user = user or self.user
        channel = channel or self.channel
        message = FakeMessage(id=self.ids.next(), channel_id=channel.id, guild_id=channel.guild_id,
                              author=user.payload(), kind="user", content=content,
                              attachments=[self.cdn.get(file) for file in files or []])
        self.store.messages[message.id] = message
        message.snapshot()
        return message

    async def invoke_message_command(self, name: str, message: FakeMessage, *, user: FakeUser | None = None,
                                     locale: str = "en-US") -> FakeInteraction:
        """Right-click ``message`` -> Apps -> ``name`` as ``user``: a message context-menu command."""
        user = user or self.user
        channel = self.world.channel_by_id(message.channel_id)
        assert channel is not None
        guild = self.world.guilds.get(channel.guild_id) if channel.guild_id else None
        command = self.commands.find(name, guild.id if guild else None, command_type=3)
        if command is None:
            raise InvalidInvocation(f"no message command {name!r} is registered (registered: {self.commands.names()})")
        interaction = self.interaction_factory.message_command(command, message, user=user, guild=guild,
                                                               channel=channel, locale=locale,
                                                               bot_user=self.world.bot.payload())
        await self._dispatch(interaction)
        return interaction

    async def select(self, message: FakeMessage | int, values: list[str], custom_id: str | None = None, *,
                     user: FakeUser | None = None, locale: str = "en-US") -> FakeInteraction:
        """Pick ``values`` in a string select menu on a message (the only one, or by ``custom_id``), as ``user``.
        The values must be among its options, and as many as its min/max values allow."""
        user = user or self.user
        target = message if isinstance(message, FakeMessage) else self.store.messages.get(int(message))
        if target is None or target.deleted:
            raise InvalidInvocation(f"message {message} does not exist (or was deleted)")
        menu = target.select(custom_id)
        if menu.get("disabled"):
            raise InvalidInvocation(f"select {menu.get('custom_id')!r} on message {target.id} is disabled")
        offered = [option["value"] for option in menu.get("options", [])]
        if menu.get("type") == 3 and any(value not in offered for value in values):
            raise InvalidInvocation(f"values {values} are not all among the options {offered}")
        if not menu.get("min_values", 1) <= len(values) <= menu.get("max_values", 1):
            raise InvalidInvocation(f"select {menu.get('custom_id')!r} takes {menu.get('min_values', 1)}-"
                                    f"{menu.get('max_values', 1)} values; got {len(values)}")
        if target.ephemeral and target.interaction is not None and target.interaction.user.id != user.id:
            raise InvalidInvocation(f"message {target.id} is ephemeral: only {target.interaction.user.name} can see it")
        interaction = self.interaction_factory.component(target, menu["custom_id"], menu["type"], values, user=user,
                                                         bot_user=self.world.bot.payload(), locale=locale)
        await self._dispatch(interaction)
        return interaction

    async def submit_modal(self, opened_by: FakeInteraction, values: dict[str, str], *,
                           user: FakeUser | None = None, locale: str = "en-US") -> FakeInteraction:
        """Fill in and submit the modal the bot answered ``opened_by`` with (text inputs by custom id; inputs
        left out keep their pre-filled value)."""
        interaction = self.interaction_factory.modal_submit(opened_by, values, user=user or opened_by.user,
                                                            locale=locale)
        await self._dispatch(interaction)
        return interaction

    def _where(self, guild: FakeGuild | None, channel: FakeChannel | None, user: FakeUser,
               dm: bool) -> tuple[FakeGuild | None, FakeChannel]:
        if dm:
            return None, self.world.dm_channel(user)
        if channel is not None:
            if channel.guild_id is None:
                return None, channel
            return self.world.guilds[channel.guild_id], channel
        guild = guild or self.guild
        return guild, guild.default_channel

    def _registered(self, name: str, guild: FakeGuild | None) -> dict:
        command = self.commands.find(name, guild.id if guild else None)
        if command is None:
            raise InvalidInvocation(f"/{name} is not registered with the fake (registered: {self.commands.names()}); "
                                    "did the bot sync its command tree?")
        return command

    async def _dispatch(self, interaction: FakeInteraction) -> None:
        if self.gateway.session is None:
            raise NotConnected("no bot has logged in to the fake gateway yet (await fake.wait_ready())")
        self.interactions[interaction.id] = interaction
        self.interactions_by_token[interaction.token] = interaction
        interaction.dispatched_at = interaction.created_at = time.monotonic()
        interaction.seq = self.gateway.dispatch("INTERACTION_CREATE", interaction.payload)
        await self.changes.notify()

    # --- observing ---------------------------------------------------------------------------------------------

    @property
    def messages(self) -> list[FakeMessage]:
        """Every message the bot created (responses, followups, channel messages), oldest first, deleted included."""
        return list(self.store.messages.values())

    def channel_messages(self, channel: FakeChannel | None = None) -> list[FakeMessage]:
        """Non-deleted messages in a channel (default ``#general``), oldest first."""
        return self.store.in_channel((channel or self.channel).id)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every REST request, in arrival order."""
        return self.api.requests

    def requests_to(self, method: str, path_regex: str) -> list[RecordedRequest]:
        """Recorded REST requests with this method whose API path matches the regex (searched)."""
        pattern = re.compile(path_regex)
        return [r for r in self.api.requests if r.method == method.upper() and pattern.search(r.path)]

    @property
    def unknown_routes(self) -> list[str]:
        return self.api.unknown_routes

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0, what: str = "a condition") -> Any:
        """The first truthy ``predicate()``, re-checked whenever the fake's state changes."""
        return await self.changes.wait_for(predicate, timeout, what)

    async def wait_for_message(self, predicate: Callable[[FakeMessage], Any], timeout: float = 10.0) -> FakeMessage:
        """The first live message (any kind) for which ``predicate`` holds."""
        return await self.wait_for(
            lambda: next((m for m in self.store.messages.values() if not m.deleted and predicate(m)), None),
            timeout, "a matching message")

    async def wait_for_command(self, name: str, timeout: float = 30.0) -> dict:
        """The registered command ``name`` (global or in any guild), once the bot has synced it."""
        def find() -> dict | None:
            return next((c for scope in self.commands.scopes.values() for (_, n), c in scope.items() if n == name), None)

        return await self.wait_for(find, timeout, f"/{name} to be registered")

    # --- gateway -----------------------------------------------------------------------------------------------

    async def wait_ready(self, identifies: int = 1, timeout: float = 30.0) -> None:
        """Until ``identifies`` sessions have been started and the latest is connected with its guilds delivered.
        After restarting a bot process, pass the new total (e.g. 2)."""
        await self.wait_for(lambda: self.gateway.identifies >= identifies and self.gateway.connected, timeout,
                            f"bot session #{identifies} to be connected")

    async def disconnect_gateway(self, code: int = 4000, *, resume: bool = True, down_for: float = 0.0) -> None:
        """Close the bot's gateway socket from the server. With ``resume`` the client resumes and missed events
        are replayed; without, its RESUME is refused and it identifies anew. ``down_for`` seconds of refused
        reconnects simulate an outage."""
        await self.gateway.disconnect(code, resume=resume, down_for=down_for)
        await self.changes.notify()

    async def dispatch_event(self, name: str, data: dict) -> int:
        """Send an arbitrary gateway event to the bot; returns its sequence number."""
        seq = self.gateway.dispatch(name, data)
        await self.changes.notify()
        return seq

    # --- faults ------------------------------------------------------------------------------------------------

    def fail_next(self, method: str, path_regex: str, status: int = 500, count: int = 1, body: object = None) -> FaultRule:
        """Answer the next ``count`` matching REST requests with ``status`` (and a JSON error body).
        ``method`` may be "*". Note discord.py's own retries: a request is tried 5 times (sleeping 1, 3, 5, 7, 9 s)
        when it answers 500/502/504 on the bot's REST client, or any 5xx on a webhook (interaction responses)."""
        return self.faults.add(method, path_regex, status, count, body=body)

    def rate_limit_next(self, method: str, path_regex: str, retry_after: float = 0.5, count: int = 1,
                        is_global: bool = False, from_proxy: bool = False) -> FaultRule:
        """Answer the next ``count`` matching REST requests with a 429. Discord's own 429 is one discord.py waits
        out and retries by itself; with ``from_proxy`` it comes from a proxy in front of Discord (no ``Via``
        header, text body, ``Retry-After`` in whole seconds), which discord.py hands to its caller."""
        return self.faults.add(method, path_regex, 429, count, retry_after=retry_after, is_global=is_global,
                               from_proxy=from_proxy)
