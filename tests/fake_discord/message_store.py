"""Creating, editing and deleting messages with Discord's rules for attachments, flags, limits and mentions."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .cdn import Cdn, FakeAttachment, image_size, sniff_content_type
from .errors import INVALID_FORM_BODY, REQUEST_TOO_LARGE, RestError
from .ids import SnowflakeFactory, iso_now
from .messages import EPHEMERAL, LOADING, FakeMessage, mentioned_user_ids
from .multipart import UploadedFile
from .validation import FormErrors, check_message
from .world import World

if TYPE_CHECKING:
    from .interactions import FakeInteraction

NONCE_WINDOW_S = 120.0


class MessageStore:
    """Every message in one place, in creation order."""

    def __init__(self, world: World, cdn: Cdn, ids: SnowflakeFactory, *, attachment_size_limit: int) -> None:
        self.world = world
        self.cdn = cdn
        self.ids = ids
        self.attachment_size_limit = attachment_size_limit
        self.messages: dict[int, FakeMessage] = {}
        self._nonces: dict[tuple[int, str], tuple[float, int]] = {}

    def get(self, message_id: int) -> FakeMessage | None:
        message = self.messages.get(message_id)
        return None if message is None or message.deleted else message

    def create(self, channel_id: int, payload: dict, files: list[UploadedFile], *, kind: str,
               interaction: FakeInteraction | None = None, extra_flags: int = 0, allow_empty: bool = False) -> FakeMessage:
        """A new message from the bot; raises RestError for what Discord would refuse."""
        errors = FormErrors()
        check_message(payload, file_count=len(files), creating=not allow_empty, errors=errors)
        self._raise(errors)
        self._check_sizes(files)
        channel = self.world.channel_by_id(channel_id)
        assert channel is not None
        webhook_id = self.world.application_id if interaction is not None else None
        message = FakeMessage(
            id=self.ids.next(),
            channel_id=channel_id,
            guild_id=channel.guild_id,
            author=self.world.bot.payload(),
            kind=kind,
            interaction=interaction,
            flags=(payload.get("flags") or 0) | extra_flags,
            nonce=payload.get("nonce"),
            message_reference=_reference(payload.get("message_reference")),
            webhook_id=webhook_id,
        )
        self._apply(message, payload, files)
        self.messages[message.id] = message
        message.snapshot()
        return message

    def edit(self, message: FakeMessage, payload: dict, files: list[UploadedFile]) -> FakeMessage:
        """Apply an edit: only the fields present change; ``attachments`` lists what to keep plus the new files."""
        errors = FormErrors()
        check_message(payload, file_count=len(files), creating=False, errors=errors)
        self._raise(errors)
        self._check_sizes(files)
        self._apply(message, payload, files)
        # Editing a deferred response replaces the "thinking" state; ephemerality is fixed at creation.
        message.flags &= ~LOADING
        message.edited_timestamp = iso_now()
        message.snapshot()
        return message

    def delete(self, message: FakeMessage) -> None:
        message.deleted = True

    def duplicate_of(self, channel_id: int, payload: dict) -> FakeMessage | None:
        """With ``enforce_nonce``, the message already sent with this nonce in the last few minutes."""
        nonce = payload.get("nonce")
        if not payload.get("enforce_nonce") or nonce is None:
            return None
        seen = self._nonces.get((channel_id, str(nonce)))
        if seen is None or time.monotonic() - seen[0] > NONCE_WINDOW_S:
            return None
        return self.messages.get(seen[1])

    def remember_nonce(self, message: FakeMessage) -> None:
        if message.nonce is not None:
            self._nonces[(message.channel_id, str(message.nonce))] = (time.monotonic(), message.id)

    def in_channel(self, channel_id: int) -> list[FakeMessage]:
        return [m for m in self.messages.values() if m.channel_id == channel_id and not m.deleted]

    def _apply(self, message: FakeMessage, payload: dict, files: list[UploadedFile]) -> None:
        if "content" in payload:
            message.content = payload["content"] or ""
            message.mentions = mentioned_user_ids(message.content, payload.get("allowed_mentions"), set(self.world.users))
        if "embeds" in payload:
            message.embeds = list(payload["embeds"] or [])
        if "components" in payload:
            message.components = list(payload["components"] or [])
        entries = payload.get("attachments")
        if entries is not None:
            keep = {str(entry.get("id")) for entry in entries}
            message.attachments = [a for a in message.attachments if str(a.id) in keep]
        described = {str(entry.get("id")): entry for entry in entries or []}
        for upload in files:
            entry = described.get(str(upload.index), {})
            message.attachments.append(self._store_upload(message, upload, entry))

    def _store_upload(self, message: FakeMessage, upload: UploadedFile, entry: dict) -> FakeAttachment:
        filename = entry.get("filename") or upload.filename
        size = image_size(upload.data)
        attachment = self.cdn.store(
            self.ids.next(),
            message.channel_id,
            upload.data,
            filename,
            sniff_content_type(upload.data, filename),
            width=size[0] if size else None,
            height=size[1] if size else None,
            description=entry.get("description"),
        )
        attachment.ephemeral = bool(message.flags & EPHEMERAL)
        return attachment

    def _check_sizes(self, files: list[UploadedFile]) -> None:
        for upload in files:
            if len(upload.data) > self.attachment_size_limit:
                raise RestError(413, REQUEST_TOO_LARGE,
                                f"Request entity too large: {upload.filename} is {len(upload.data)} bytes, "
                                f"the limit is {self.attachment_size_limit}")

    @staticmethod
    def _raise(errors: FormErrors) -> None:
        if errors:
            raise RestError(400, INVALID_FORM_BODY, "Invalid Form Body", errors.tree)


def _reference(reference: dict | None) -> dict | None:
    """A reply's reference as Discord stores it: ids as strings, whatever the client sent."""
    if reference is None:
        return None
    return {key: str(value) if key.endswith("_id") and value is not None else value for key, value in reference.items()}
