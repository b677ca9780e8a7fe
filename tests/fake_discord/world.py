"""Who and where: the bot's application, users, guilds, roles, channels, and their Discord payloads."""

from __future__ import annotations

from dataclasses import dataclass, field

from .ids import SnowflakeFactory, iso_now, new_token
from .permissions import ALL_PERMISSIONS, BOT_DEFAULT, EVERYONE_DEFAULT, to_bits

TEXT_CHANNEL = 0
DM_CHANNEL = 1
VOICE_CHANNEL = 2
CATEGORY_CHANNEL = 4
PUBLIC_THREAD = 11
STAGE_CHANNEL = 13
FORUM_CHANNEL = 15
MEDIA_CHANNEL = 16
THREAD_TYPES = frozenset({10, PUBLIC_THREAD, 12})


@dataclass
class FakeUser:
    """A Discord user; ``permissions`` are extra bits granted in every guild through a role of their own."""

    id: int
    name: str
    bot: bool = False
    permissions: int = 0

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"

    def payload(self) -> dict:
        return {
            "id": str(self.id),
            "username": self.name,
            "global_name": None if self.bot else self.name.title(),
            "discriminator": "0",
            "avatar": None,
            "bot": self.bot,
            "system": False,
            "public_flags": 0,
            "flags": 0,
        }


@dataclass
class FakeRole:
    id: int
    name: str
    permissions: int
    position: int = 0
    managed: bool = False

    def payload(self) -> dict:
        return {
            "id": str(self.id),
            "name": self.name,
            "permissions": str(self.permissions),
            "position": self.position,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "managed": self.managed,
            "mentionable": False,
            "flags": 0,
            "icon": None,
            "unicode_emoji": None,
        }


@dataclass
class FakeChannel:
    id: int
    name: str
    guild_id: int | None
    type: int = TEXT_CHANNEL
    position: int = 0
    recipient: FakeUser | None = None
    parent_id: int | None = None
    owner_id: int | None = None

    @property
    def is_thread(self) -> bool:
        return self.type in THREAD_TYPES

    def payload(self) -> dict:
        if self.type == DM_CHANNEL:
            assert self.recipient is not None
            return {"id": str(self.id), "type": DM_CHANNEL, "last_message_id": None,
                    "recipients": [self.recipient.payload()], "flags": 0}
        if self.is_thread:
            return {
                "id": str(self.id),
                "type": self.type,
                "guild_id": str(self.guild_id),
                "parent_id": str(self.parent_id),
                "owner_id": str(self.owner_id),
                "name": self.name,
                "last_message_id": None,
                "rate_limit_per_user": 0,
                "message_count": 0,
                "member_count": 1,
                "flags": 0,
                "thread_metadata": {"archived": False, "auto_archive_duration": 1440,
                                    "archive_timestamp": iso_now(), "locked": False},
            }
        extra = {"bitrate": 64000, "user_limit": 0, "rtc_region": None} if self.type in (VOICE_CHANNEL, STAGE_CHANNEL) else {}
        return extra | {
            "id": str(self.id),
            "type": self.type,
            "guild_id": str(self.guild_id),
            "name": self.name,
            "position": self.position,
            "permission_overwrites": [],
            "parent_id": None,
            "topic": None,
            "nsfw": False,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "flags": 0,
        }


@dataclass
class FakeGuild:
    id: int
    name: str
    owner_id: int
    everyone: FakeRole
    roles: dict[int, FakeRole] = field(default_factory=dict)
    channels: dict[int, FakeChannel] = field(default_factory=dict)
    member_roles: dict[int, list[int]] = field(default_factory=dict)
    joined_at: str = field(default_factory=iso_now)

    @property
    def default_channel(self) -> FakeChannel:
        return next(iter(self.channels.values()))

    def permissions_of(self, user: FakeUser) -> int:
        """Guild-level permissions of a member: @everyone plus their roles; owners and admins get everything."""
        if user.id == self.owner_id:
            return ALL_PERMISSIONS
        bits = self.everyone.permissions
        for role_id in self.member_roles.get(user.id, []):
            bits |= self.roles[role_id].permissions
        if bits & (1 << 3):
            return ALL_PERMISSIONS
        return bits

    def member_payload(self, user: FakeUser, *, with_permissions: bool = False) -> dict:
        payload = {
            "user": user.payload(),
            "roles": [str(r) for r in self.member_roles.get(user.id, [])],
            "nick": None,
            "avatar": None,
            "banner": None,
            "joined_at": self.joined_at,
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": None,
        }
        if with_permissions:
            payload["permissions"] = str(self.permissions_of(user))
        return payload

    def base_payload(self) -> dict:
        return {
            "id": str(self.id),
            "name": self.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "owner_id": str(self.owner_id),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "roles": [self.everyone.payload()] + [r.payload() for r in self.roles.values()],
            "emojis": [],
            "stickers": [],
            "features": [],
            "mfa_level": 0,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "vanity_url_code": None,
            "description": None,
            "banner": None,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "preferred_locale": "en-US",
            "public_updates_channel_id": None,
            "nsfw_level": 0,
            "premium_progress_bar_enabled": False,
        }

    def create_payload(self, members: list[FakeUser]) -> dict:
        """The GUILD_CREATE payload: everything the client caches about the guild."""
        payload = self.base_payload()
        payload.update(
            {
                "joined_at": self.joined_at,
                "large": False,
                "unavailable": False,
                "member_count": len(members),
                "members": [self.member_payload(user) for user in members],
                "channels": [c.payload() for c in self.channels.values() if not c.is_thread],
                "threads": [c.payload() for c in self.channels.values() if c.is_thread],
                "presences": [],
                "voice_states": [],
                "stage_instances": [],
                "guild_scheduled_events": [],
                "soundboard_sounds": [],
            }
        )
        return payload


class World:
    """The application, its bot user, and the users, guilds and channels it can see."""

    def __init__(self, ids: SnowflakeFactory, *, bot_name: str = "NST Bot", bot_permissions: object = None) -> None:
        self.ids = ids
        self.application_id = ids.next()
        self.bot = FakeUser(self.application_id, bot_name, bot=True)
        self.bot_permissions = BOT_DEFAULT if bot_permissions is None else to_bits(bot_permissions)
        self.users: dict[int, FakeUser] = {self.bot.id: self.bot}
        self.guilds: dict[int, FakeGuild] = {}
        self.dm_channels: dict[int, FakeChannel] = {}
        self.owner = self.add_user("owner")
        self.guild = self.add_guild("Test Guild")
        self.channel = self.guild.default_channel

    def add_user(self, name: str, *, permissions: object = None, bot: bool = False) -> FakeUser:
        """A new user, member of every guild, with extra ``permissions`` through a role of their own."""
        user = FakeUser(self.ids.next(), name, bot=bot, permissions=to_bits(permissions))
        self.users[user.id] = user
        for guild in self.guilds.values():
            self._join(guild, user)
        return user

    def add_guild(self, name: str) -> FakeGuild:
        """A new guild owned by ``owner`` with one text channel, ``#general``; every known user is a member."""
        guild_id = self.ids.next()
        everyone = FakeRole(guild_id, "@everyone", EVERYONE_DEFAULT)
        guild = FakeGuild(guild_id, name, self.owner.id, everyone)
        bot_role = FakeRole(self.ids.next(), self.bot.name, self.bot_permissions, position=1, managed=True)
        guild.roles[bot_role.id] = bot_role
        self.guilds[guild_id] = guild
        self.add_channel(guild, "general")
        for user in self.users.values():
            if user is self.bot:
                guild.member_roles[user.id] = [bot_role.id]
            else:
                self._join(guild, user)
        return guild

    def add_channel(self, guild: FakeGuild, name: str, *, type: int = TEXT_CHANNEL,
                    parent: FakeChannel | None = None) -> FakeChannel:
        """A channel of ``type`` (text by default); a thread (types 10-12) needs its ``parent``."""
        if (type in THREAD_TYPES) != (parent is not None):
            raise ValueError("threads, and only threads, have a parent channel")
        channel = FakeChannel(self.ids.next(), name, guild.id, type=type, position=len(guild.channels),
                              parent_id=parent.id if parent else None,
                              owner_id=self.owner.id if parent else None)
        guild.channels[channel.id] = channel
        return channel

    def dm_channel(self, user: FakeUser) -> FakeChannel:
        """The bot's DM channel with ``user``, opened on first use."""
        if user.id not in self.dm_channels:
            self.dm_channels[user.id] = FakeChannel(self.ids.next(), "", None, type=DM_CHANNEL, recipient=user)
        return self.dm_channels[user.id]

    def channel_by_id(self, channel_id: int) -> FakeChannel | None:
        for guild in self.guilds.values():
            if channel_id in guild.channels:
                return guild.channels[channel_id]
        return next((c for c in self.dm_channels.values() if c.id == channel_id), None)

    def members_of(self, guild: FakeGuild) -> list[FakeUser]:
        return [self.users[user_id] for user_id in guild.member_roles]

    def bot_permissions_in(self, guild: FakeGuild | None) -> int:
        return ALL_PERMISSIONS if guild is None else guild.permissions_of(self.bot)

    def _join(self, guild: FakeGuild, user: FakeUser) -> None:
        roles: list[int] = []
        if user.permissions:
            role = FakeRole(self.ids.next(), f"{user.name}-perms", user.permissions, position=1)
            guild.roles[role.id] = role
            roles.append(role.id)
        guild.member_roles[user.id] = roles

    def application_payload(self) -> dict:
        """``GET /oauth2/applications/@me``."""
        return {
            "id": str(self.application_id),
            "name": self.bot.name,
            "icon": None,
            "description": "A fake application served by tests/fake_discord.",
            "summary": "",
            "type": None,
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": new_token("verify"),
            "flags": 0,
            "owner": self.owner.payload(),
            "team": None,
            "bot": self.bot.payload(),
            "interactions_endpoint_url": None,
            "redirect_uris": [],
            "tags": [],
        }
