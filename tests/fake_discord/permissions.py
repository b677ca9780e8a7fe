"""Discord permission bits, and turning the ways a test may name permissions into one integer."""

from __future__ import annotations

from collections.abc import Iterable

PERMISSION_BITS: dict[str, int] = {
    "create_instant_invite": 0,
    "kick_members": 1,
    "ban_members": 2,
    "administrator": 3,
    "manage_channels": 4,
    "manage_guild": 5,
    "add_reactions": 6,
    "view_audit_log": 7,
    "priority_speaker": 8,
    "stream": 9,
    "view_channel": 10,
    "send_messages": 11,
    "send_tts_messages": 12,
    "manage_messages": 13,
    "embed_links": 14,
    "attach_files": 15,
    "read_message_history": 16,
    "mention_everyone": 17,
    "use_external_emojis": 18,
    "view_guild_insights": 19,
    "connect": 20,
    "speak": 21,
    "mute_members": 22,
    "deafen_members": 23,
    "move_members": 24,
    "use_voice_activation": 25,
    "change_nickname": 26,
    "manage_nicknames": 27,
    "manage_roles": 28,
    "manage_webhooks": 29,
    "manage_expressions": 30,
    "use_application_commands": 31,
    "request_to_speak": 32,
    "manage_events": 33,
    "manage_threads": 34,
    "create_public_threads": 35,
    "create_private_threads": 36,
    "use_external_stickers": 37,
    "send_messages_in_threads": 38,
    "use_embedded_activities": 39,
    "moderate_members": 40,
    "view_creator_monetization_analytics": 41,
    "use_soundboard": 42,
    "create_expressions": 43,
    "create_events": 44,
    "use_external_sounds": 45,
    "send_voice_messages": 46,
    "send_polls": 49,
    "use_external_apps": 50,
    "pin_messages": 51,
}

# Names people use for the same bit (Discord's UI and discord.py's aliases).
ALIASES: dict[str, str] = {
    "manage_server": "manage_guild",
    "read_messages": "view_channel",
    "manage_emojis": "manage_expressions",
    "use_slash_commands": "use_application_commands",
}

ALL_PERMISSIONS = sum(1 << bit for bit in PERMISSION_BITS.values())

EVERYONE_DEFAULT = sum(
    1 << PERMISSION_BITS[name]
    for name in (
        "create_instant_invite",
        "add_reactions",
        "view_channel",
        "send_messages",
        "embed_links",
        "attach_files",
        "read_message_history",
        "use_external_emojis",
        "connect",
        "speak",
        "change_nickname",
        "use_application_commands",
    )
)

BOT_DEFAULT = EVERYONE_DEFAULT | sum(
    1 << PERMISSION_BITS[name] for name in ("send_messages_in_threads", "use_external_stickers")
)

PermissionsLike = int | Iterable[str] | None


def to_bits(value: object) -> int:
    """Turn an int, a discord.Permissions-like object (``.value``) or an iterable of names into permission bits."""
    if value is None:
        return 0
    if isinstance(value, bool):
        raise TypeError("permissions must be an int, a Permissions object or permission names, not a bool")
    if isinstance(value, int):
        return value
    if isinstance(getattr(value, "value", None), int):
        return value.value  # type: ignore[attr-defined]
    if isinstance(value, str):
        value = [value]
    bits = 0
    for name in value:  # type: ignore[union-attr]
        key = ALIASES.get(name, name)
        if key not in PERMISSION_BITS:
            raise ValueError(f"unknown permission name {name!r}; known: {', '.join(sorted(PERMISSION_BITS))}")
        bits |= 1 << PERMISSION_BITS[key]
    return bits


def has(bits: int, name: str) -> bool:
    """Whether ``bits`` grant the named permission (administrator grants everything)."""
    if bits & (1 << PERMISSION_BITS["administrator"]):
        return True
    return bool(bits & (1 << PERMISSION_BITS[ALIASES.get(name, name)]))
