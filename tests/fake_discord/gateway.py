"""The gateway websocket: HELLO, IDENTIFY -> READY + GUILD_CREATE, heartbeats, RESUME with replay, dispatch.

Each session keeps every event it dispatched, numbered by sequence. A connection attached to a session runs one
writer task that sends the session's events from its cursor on, so dispatching never waits for the socket,
events queue up while the bot is disconnected, and a RESUME simply moves the cursor back to the client's seq.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

from .compression import Compressor, make_compressor
from .errors import NotConnected
from .ids import new_token
from .waiting import Changes
from .world import World

log = logging.getLogger("fake_discord.gateway")

DISPATCH, HEARTBEAT, IDENTIFY, PRESENCE_UPDATE, RESUME, RECONNECT, REQUEST_GUILD_MEMBERS = 0, 1, 2, 3, 6, 7, 8
INVALID_SESSION, HELLO, HEARTBEAT_ACK = 9, 10, 11
VOICE_STATE_UPDATE = 4

PRIVILEGED_INTENTS = {1 << 1: "GUILD_MEMBERS", 1 << 8: "GUILD_PRESENCES", 1 << 15: "MESSAGE_CONTENT"}


@dataclass
class GatewaySession:
    """A logged-in bot session: its events (index = seq - 1) and the connection currently attached, if any."""

    id: str
    intents: int
    shard: list[int] | None
    events: list[dict] = field(default_factory=list)
    ready_seq: int = 0
    connection: GatewayConnection | None = None
    invalidated: bool = False
    resumes: int = 0
    presence: dict | None = None
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def seq(self) -> int:
        return len(self.events)

    def append(self, event: str, data: dict) -> int:
        self.events.append({"op": DISPATCH, "t": event, "s": self.seq + 1, "d": data})
        self.wakeup.set()
        return self.seq


@dataclass
class GatewayConnection:
    """One websocket. ``kind`` is how it logged in ("identify" or "resume"); None until it did."""

    ws: web.WebSocketResponse
    path: str
    compression: str | None
    compressor: Compressor | None
    opened_at: float = field(default_factory=time.monotonic)
    kind: str | None = None
    session: GatewaySession | None = None
    cursor: int = 1
    heartbeats: int = 0
    closed_at: float | None = None
    close_code: int | None = None
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    writer: asyncio.Task | None = None

    @property
    def sent_seq(self) -> int:
        return self.cursor - 1

    async def send(self, payload: dict) -> None:
        text = json.dumps(payload, separators=(",", ":"))
        # The compression stream and the frame order must agree, so compress and send under one lock.
        async with self.send_lock:
            if self.compressor is None:
                await self.ws.send_str(text)
            else:
                await self.ws.send_bytes(self.compressor(text.encode()))


class Gateway:
    """Accepts bot connections and delivers events to the most recently identified session."""

    def __init__(self, world: World, changes: Changes, *, token: str, heartbeat_interval_ms: int,
                 allow_privileged_intents: bool) -> None:
        self.world = world
        self.changes = changes
        self.token = token
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.allow_privileged_intents = allow_privileged_intents
        self.url = ""
        self.resume_url = ""
        self.sessions: dict[str, GatewaySession] = {}
        # The current session of each shard (0 for an unsharded bot), and how many shards the bot said it runs.
        self.shard_sessions: dict[int, GatewaySession] = {}
        self.shard_count = 1
        self.recommended_shards = 1
        self.connections: list[GatewayConnection] = []
        self.identifies = 0
        self.resumes = 0
        self._down_until = 0.0

    @property
    def session(self) -> GatewaySession | None:
        """The current session of shard 0 (the only one of an unsharded bot)."""
        return self.shard_sessions.get(0)

    @property
    def connected(self) -> bool:
        """Whether every shard's current session has a live connection that received READY (or RESUMED) and its
        guilds."""
        return len(self.shard_sessions) == self.shard_count and all(
            session.connection is not None and session.connection.sent_seq >= session.ready_seq
            for session in self.shard_sessions.values()
        )

    def shard_of(self, guild_id: int) -> int:
        """The shard that receives a guild's events (Discord's formula)."""
        return (guild_id >> 22) % self.shard_count

    def dispatch(self, event: str, data: dict) -> int:
        """Queue an event on the session of the shard it belongs to (by guild; shard 0 otherwise), sent now or
        replayed after a resume; returns its seq."""
        guild_id = data.get("guild_id") or (data.get("id") if event.startswith("GUILD_") else None)
        session = self.shard_sessions.get(self.shard_of(int(guild_id)) if guild_id else 0)
        if session is None:
            raise NotConnected(f"no bot has identified on the fake gateway; cannot dispatch {event}")
        return session.append(event, data)

    async def disconnect(self, code: int = 4000, *, resume: bool = True, down_for: float = 0.0) -> None:
        """Close the bot's socket from the server side. ``resume=False`` invalidates the session so the
        client's RESUME gets INVALID_SESSION and it identifies again; ``down_for`` refuses reconnects for a while."""
        session = self.session
        if session is None or session.connection is None:
            raise NotConnected("no bot connection to disconnect")
        session.invalidated = not resume
        if down_for:
            self._down_until = time.monotonic() + down_for
        connection = self._detach(session)
        await connection.ws.close(code=code, message=b"closed by fake_discord")

    async def request_reconnect(self) -> None:
        """Send op 7 RECONNECT, asking the client to reconnect and resume."""
        session = self.session
        if session is None or session.connection is None:
            raise NotConnected("no bot connection to send RECONNECT to")
        await session.connection.send({"op": RECONNECT, "d": None})

    async def close(self) -> None:
        for connection in list(self.connections):
            if not connection.ws.closed:
                await connection.ws.close(code=1001, message=b"fake_discord shutting down")

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if time.monotonic() < self._down_until:
            return web.Response(status=503, text="fake_discord gateway is down")
        if request.query.get("encoding", "json") != "json":
            return web.Response(status=400, text="fake_discord only speaks encoding=json")
        compression = request.query.get("compress")
        try:
            compressor = make_compressor(compression)
        except ValueError as exc:
            return web.Response(status=400, text=str(exc))
        ws = web.WebSocketResponse(max_msg_size=0, timeout=2.0)
        await ws.prepare(request)
        connection = GatewayConnection(ws, request.path, compression, compressor)
        self.connections.append(connection)
        try:
            await connection.send({"op": HELLO, "d": {"heartbeat_interval": self.heartbeat_interval_ms,
                                                      "_trace": ["fake_discord"]}})
            async for message in ws:
                if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    break
                if not await self._receive(connection, message.data):
                    break
        except ConnectionResetError:
            log.info("gateway connection reset by the client")
        finally:
            await self._closed(connection)
        return ws

    async def _receive(self, connection: GatewayConnection, raw: str | bytes) -> bool:
        try:
            payload = json.loads(raw)
            op = payload["op"]
        except (ValueError, KeyError, TypeError):
            await connection.ws.close(code=4002, message=b"Error while decoding payload.")
            return False
        data = payload.get("d")
        if op == HEARTBEAT:
            connection.heartbeats += 1
            await connection.send({"op": HEARTBEAT_ACK})
            return True
        if op == IDENTIFY:
            return await self._identify(connection, data or {})
        if op == RESUME:
            return await self._resume(connection, data or {})
        if connection.session is None:
            await connection.ws.close(code=4003, message=b"Not authenticated.")
            return False
        if op == PRESENCE_UPDATE:
            connection.session.presence = data
        elif op == REQUEST_GUILD_MEMBERS:
            self._members_chunk(connection.session, data or {})
        elif op != VOICE_STATE_UPDATE:
            await connection.ws.close(code=4001, message=b"Unknown opcode.")
            return False
        return True

    async def _identify(self, connection: GatewayConnection, data: dict) -> bool:
        if connection.session is not None:
            await connection.ws.close(code=4005, message=b"Already authenticated.")
            return False
        if data.get("token") != self.token:
            await connection.ws.close(code=4004, message=b"Authentication failed.")
            return False
        intents = data.get("intents")
        if not isinstance(intents, int):
            await connection.ws.close(code=4013, message=b"Invalid intent(s).")
            return False
        privileged = [name for bit, name in PRIVILEGED_INTENTS.items() if intents & bit]
        if privileged and not self.allow_privileged_intents:
            log.error("bot asked for privileged intents %s, which this fake application has not enabled", privileged)
            await connection.ws.close(code=4014, message=b"Disallowed intent(s).")
            return False
        shard = data.get("shard")
        if shard is not None and not (isinstance(shard, list) and len(shard) == 2 and 0 <= shard[0] < shard[1]):
            await connection.ws.close(code=4010, message=b"Invalid shard.")
            return False
        shard_id, self.shard_count = shard if shard is not None else (0, 1)
        session = GatewaySession(new_token("session"), intents, shard)
        guilds = [guild for guild in self.world.guilds.values() if self.shard_of(guild.id) == shard_id]
        session.append("READY", self._ready_payload(session, guilds))
        for guild in guilds:
            session.append("GUILD_CREATE", guild.create_payload(self.world.members_of(guild)))
        session.ready_seq = session.seq
        self.sessions[session.id] = session
        previous = self.shard_sessions.get(shard_id)
        if previous is not None and previous.connection is not None:
            self._detach(previous)
        self.shard_sessions = {i: s for i, s in self.shard_sessions.items() if i < self.shard_count}
        self.shard_sessions[shard_id] = session
        self.identifies += 1
        connection.kind = "identify"
        self._attach(session, connection, cursor=1)
        return True

    async def _resume(self, connection: GatewayConnection, data: dict) -> bool:
        session = self.sessions.get(data.get("session_id", ""))
        seq = data.get("seq")
        if (session is None or session.invalidated or data.get("token") != self.token
                or not isinstance(seq, int) or seq > session.seq):
            await connection.send({"op": INVALID_SESSION, "d": False})
            return True
        if session.connection is not None:
            old = self._detach(session)
            await old.ws.close(code=4000, message=b"Session resumed elsewhere.")
        session.append("RESUMED", {"_trace": ["fake_discord"]})
        session.ready_seq = session.seq
        session.resumes += 1
        self.resumes += 1
        connection.kind = "resume"
        self._attach(session, connection, cursor=seq + 1)
        return True

    def _attach(self, session: GatewaySession, connection: GatewayConnection, *, cursor: int) -> None:
        connection.session = session
        connection.cursor = cursor
        session.connection = connection
        connection.writer = asyncio.create_task(self._write(session, connection))

    def _detach(self, session: GatewaySession) -> GatewayConnection:
        connection = session.connection
        assert connection is not None
        session.connection = None
        if connection.writer is not None:
            connection.writer.cancel()
        return connection

    async def _write(self, session: GatewaySession, connection: GatewayConnection) -> None:
        try:
            while True:
                session.wakeup.clear()
                while connection.cursor <= session.seq:
                    await connection.send(session.events[connection.cursor - 1])
                    connection.cursor += 1
                await self.changes.notify()
                await session.wakeup.wait()
        except ConnectionResetError:
            log.info("gateway writer stopped: connection reset")

    async def _closed(self, connection: GatewayConnection) -> None:
        connection.closed_at = time.monotonic()
        connection.close_code = connection.ws.close_code
        session = connection.session
        if session is not None and session.connection is connection:
            self._detach(session)
        await self.changes.notify()

    def _members_chunk(self, session: GatewaySession, data: dict) -> None:
        guild = self.world.guilds.get(int(data.get("guild_id", 0)))
        if guild is None:
            return
        members = [guild.member_payload(user) for user in self.world.members_of(guild)]
        chunk = {"guild_id": str(guild.id), "members": members, "chunk_index": 0, "chunk_count": 1, "not_found": []}
        if "nonce" in data:
            chunk["nonce"] = data["nonce"]
        session.append("GUILD_MEMBERS_CHUNK", chunk)

    def _ready_payload(self, session: GatewaySession, guilds: list) -> dict:
        user = self.world.bot.payload() | {"verified": True, "mfa_enabled": False, "email": None}
        payload = {
            "v": 10,
            "user": user,
            "guilds": [{"id": str(guild.id), "unavailable": True} for guild in guilds],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": self.resume_url,
            "application": {"id": str(self.world.application_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "_trace": ["fake_discord"],
        }
        if session.shard is not None:
            payload["shard"] = session.shard
        return payload
