"""Messages the bot created (interaction responses, followups, channel messages), with every version kept."""

from __future__ import annotations

import copy
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .cdn import FakeAttachment
from .ids import iso_now

if TYPE_CHECKING:
    from .interactions import FakeInteraction

EPHEMERAL = 1 << 6
LOADING = 1 << 7
SUPPRESS_EMBEDS = 1 << 2

_USER_MENTION = re.compile(r"<@!?(\d+)>")


@dataclass(frozen=True)
class MessageVersion:
    """A message as it looked after its creation or one edit."""

    at: float
    content: str
    embeds: list[dict]
    components: list[dict]
    attachments: list[FakeAttachment]
    flags: int


@dataclass
class FakeMessage:
    """A message in a channel. ``kind`` is ``"response"`` (an interaction's @original), ``"followup"`` or ``"channel"``."""

    id: int
    channel_id: int
    guild_id: int | None
    author: dict
    kind: str
    interaction: FakeInteraction | None = None
    content: str = ""
    embeds: list[dict] = field(default_factory=list)
    components: list[dict] = field(default_factory=list)
    attachments: list[FakeAttachment] = field(default_factory=list)
    flags: int = 0
    mentions: list[int] = field(default_factory=list)
    nonce: str | None = None
    message_reference: dict | None = None
    webhook_id: int | None = None
    timestamp: str = field(default_factory=iso_now)
    edited_timestamp: str | None = None
    deleted: bool = False
    history: list[MessageVersion] = field(default_factory=list)

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)

    @property
    def loading(self) -> bool:
        """True while this is a deferred response still "thinking"."""
        return bool(self.flags & LOADING)

    @property
    def files(self) -> list[FakeAttachment]:
        return list(self.attachments)

    @property
    def edits(self) -> list[MessageVersion]:
        """Every version after the first."""
        return self.history[1:]

    @property
    def text(self) -> str:
        """All human-readable text: content plus embed titles, descriptions, fields, footers and authors."""
        parts = [self.content]
        for embed in self.embeds:
            parts += [embed.get("title", ""), embed.get("description", "")]
            for embed_field in embed.get("fields", []):
                parts += [embed_field.get("name", ""), embed_field.get("value", "")]
            parts += [embed.get("footer", {}).get("text", ""), embed.get("author", {}).get("name", "")]
        return "\n".join(part for part in parts if part)

    @property
    def buttons(self) -> list[dict]:
        """Every button on the message, flattened out of its action rows."""
        return [c for c in _walk_components(self.components) if c.get("type") == 2]

    def button(self, *, label: str | None = None, custom_id: str | None = None) -> dict:
        """The one button with this label or custom id; raises LookupError naming what is there."""
        for button in self.buttons:
            if (label is None or button.get("label") == label) and (custom_id is None or button.get("custom_id") == custom_id):
                return button
        shown = [(b.get("label"), b.get("custom_id")) for b in self.buttons]
        raise LookupError(f"no button label={label!r} custom_id={custom_id!r} on message {self.id}; buttons: {shown}")

    @property
    def selects(self) -> list[dict]:
        """Every select menu on the message (string, user, role, mentionable, channel)."""
        return [c for c in _walk_components(self.components) if c.get("type") in (3, 5, 6, 7, 8)]

    def select(self, custom_id: str | None = None) -> dict:
        """The select menu with this custom id (or the only one); raises LookupError naming what is there."""
        matches = [s for s in self.selects if custom_id is None or s.get("custom_id") == custom_id]
        if len(matches) != 1:
            shown = [s.get("custom_id") for s in self.selects]
            raise LookupError(f"no single select custom_id={custom_id!r} on message {self.id}; selects: {shown}")
        return matches[0]

    def mentions_user(self, user: object) -> bool:
        """Whether the message pings ``user`` (a FakeUser or id), honouring allowed_mentions."""
        user_id = int(getattr(user, "id", user))  # type: ignore[arg-type]
        return user_id in self.mentions

    def snapshot(self) -> None:
        self.history.append(
            MessageVersion(
                at=time.monotonic(),
                content=self.content,
                embeds=copy.deepcopy(self.embeds),
                components=copy.deepcopy(self.components),
                attachments=list(self.attachments),
                flags=self.flags,
            )
        )

    def payload(self, bot_user: dict) -> dict:
        """The message as Discord returns it."""
        payload: dict = {
            "id": str(self.id),
            "channel_id": str(self.channel_id),
            "type": 20 if self.kind == "response" and self.interaction and self.interaction.type == 2 else 0,
            "author": self.author,
            "content": self.content,
            "timestamp": self.timestamp,
            "edited_timestamp": self.edited_timestamp,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [a.payload() for a in self.attachments],
            "embeds": self.embeds,
            "components": self.components,
            "pinned": False,
            "flags": self.flags,
        }
        if self.guild_id is not None:
            payload["guild_id"] = str(self.guild_id)
        if self.nonce is not None:
            payload["nonce"] = self.nonce
        if self.message_reference is not None:
            payload["message_reference"] = self.message_reference
        if self.webhook_id is not None:
            payload["webhook_id"] = str(self.webhook_id)
            payload["application_id"] = str(self.webhook_id)
        if self.interaction is not None:
            payload["interaction_metadata"] = self.interaction.metadata()
            if self.interaction.type == 2:
                payload["interaction"] = {
                    "id": str(self.interaction.id),
                    "type": 2,
                    "name": self.interaction.name,
                    "user": self.interaction.user.payload(),
                }
        return payload


def _walk_components(components: list[dict]):
    for component in components:
        yield component
        yield from _walk_components(component.get("components", []))
        if "component" in component:
            yield from _walk_components([component["component"]])
        accessory = component.get("accessory")
        if accessory:
            yield accessory


def mentioned_user_ids(content: str, allowed_mentions: dict | None, known: set[int]) -> list[int]:
    """Users a message pings: ``<@id>`` in the content that allowed_mentions lets through and that exist."""
    ids = [int(m) for m in _USER_MENTION.findall(content or "")]
    if allowed_mentions is not None:
        if "users" in allowed_mentions.get("parse", []):
            pass
        elif allowed_mentions.get("users"):
            allowed = {int(u) for u in allowed_mentions["users"]}
            ids = [i for i in ids if i in allowed]
        else:
            ids = []
    seen: list[int] = []
    for user_id in ids:
        if user_id in known and user_id not in seen:
            seen.append(user_id)
    return seen
