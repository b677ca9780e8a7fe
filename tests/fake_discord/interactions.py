"""Interactions the fake sends to the bot, and the handle a test uses to watch how the bot answers one."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .cdn import FakeAttachment
from .errors import CommandNotPermitted, InvalidInvocation
from .ids import new_token
from .messages import FakeMessage
from .multipart import UploadedFile
from .permissions import has
from .waiting import Changes
from .world import FakeChannel, FakeGuild, FakeRole, FakeUser, World

APPLICATION_COMMAND = 2
MESSAGE_COMPONENT = 3
AUTOCOMPLETE = 4
MODAL_SUBMIT = 5
MESSAGE_COMMAND = 3  # the command type of a message context-menu command
TEXT_INPUT = 4

OPTION_TYPES = {1: "subcommand", 2: "subcommand group", 3: "string", 4: "integer", 5: "boolean", 6: "user",
                7: "channel", 8: "role", 9: "mentionable", 10: "number", 11: "attachment"}


@dataclass(frozen=True)
class Callback:
    """One answer the bot posted to ``/interactions/{id}/{token}/callback``."""

    type: int
    data: dict
    files: list[UploadedFile]
    at: float


@dataclass
class Rejection:
    """A request about this interaction that the fake refused, as the real API would have."""

    method: str
    path: str
    status: int
    code: int
    message: str
    at: float = field(default_factory=time.monotonic)


class FakeInteraction:
    """A handle on one interaction: when it was created and acknowledged, its callbacks, its messages.

    ``original`` is the interaction's ``@original`` message: for commands, the response message (a "thinking"
    placeholder after a defer, which edits replace); for components, the message the component is on after a
    type 6/7 answer, or the new message after a type 4/5 answer. ``followups`` are followup messages.
    """

    def __init__(self, *, interaction_id: int, type: int, name: str, user: FakeUser, guild_id: int | None,
                 channel_id: int, changes: Changes, message: FakeMessage | None = None) -> None:
        self.id = interaction_id
        self.token = new_token("interaction")
        self.type = type
        self.name = name
        self.user = user
        self.guild_id = guild_id
        self.channel_id = channel_id
        self.message = message
        self.payload: dict = {}
        self.seq: int | None = None
        self.created_at = time.monotonic()
        self.dispatched_at: float | None = None
        self.acknowledged_at: float | None = None
        self.callbacks: list[Callback] = []
        self.original: FakeMessage | None = None
        self.followups: list[FakeMessage] = []
        self.choices: list[dict] | None = None
        self.modal: dict | None = None
        self.rejections: list[Rejection] = []
        self._changes = changes

    def __repr__(self) -> str:
        return f"<FakeInteraction id={self.id} type={self.type} name={self.name!r} user={self.user.name!r} ack={self.ack_type}>"

    @property
    def acknowledged(self) -> bool:
        return self.acknowledged_at is not None

    @property
    def ack_type(self) -> int | None:
        """The callback type of the acknowledgement (4 message, 5 defer, 6 deferred update, 7 update, 8 choices, 9 modal)."""
        return self.callbacks[0].type if self.callbacks else None

    @property
    def ack_latency(self) -> float | None:
        """Seconds from dispatch on the gateway to the acknowledgement."""
        if self.acknowledged_at is None:
            return None
        return self.acknowledged_at - (self.dispatched_at or self.created_at)

    @property
    def messages(self) -> list[FakeMessage]:
        """The original response (if any) followed by the followups."""
        return ([self.original] if self.original is not None else []) + self.followups

    def metadata(self) -> dict:
        """``interaction_metadata`` on the messages this interaction produced."""
        owners = {"0": str(self.guild_id)} if self.guild_id else {"1": str(self.user.id)}
        metadata: dict = {"id": str(self.id), "type": self.type, "user": self.user.payload(),
                          "authorizing_integration_owners": owners}
        if self.original is not None:
            metadata["original_response_message_id"] = str(self.original.id)
        return metadata

    async def wait_for(self, predicate: Callable[[FakeInteraction], Any], timeout: float = 10.0, what: str | None = None) -> Any:
        """The first truthy ``predicate(self)``, re-checked on every change to the fake."""
        return await self._changes.wait_for(lambda: predicate(self), timeout, what or f"a condition on {self!r}")

    async def wait_acknowledged(self, timeout: float = 10.0) -> Callback:
        await self.wait_for(lambda i: i.acknowledged, timeout, f"{self!r} to be acknowledged")
        return self.callbacks[0]

    async def wait_original(self, predicate: Callable[[FakeMessage], Any] | None = None, timeout: float = 10.0) -> FakeMessage:
        """The original response once ``predicate`` holds (default: it exists and is no longer "thinking")."""
        check = predicate or (lambda m: not m.loading)
        await self.wait_for(lambda i: i.original is not None and check(i.original), timeout, f"the original response of {self!r}")
        assert self.original is not None
        return self.original

    async def wait_followup(self, predicate: Callable[[FakeMessage], Any] | None = None, timeout: float = 10.0) -> FakeMessage:
        """The first followup for which ``predicate`` holds (default: any)."""
        check = predicate or (lambda m: True)

        def find(i: FakeInteraction) -> FakeMessage | None:
            return next((m for m in i.followups if check(m)), None)

        return await self.wait_for(find, timeout, f"a followup of {self!r}")

    async def wait_choices(self, timeout: float = 10.0) -> list[dict]:
        """The autocomplete choices the bot answered with."""
        await self.wait_for(lambda i: i.choices is not None, timeout, f"autocomplete choices for {self!r}")
        assert self.choices is not None
        return self.choices


class InteractionFactory:
    """Builds INTERACTION_CREATE payloads the way Discord does, from what a test asks for."""

    def __init__(self, world: World, changes: Changes, *, attachment_size_limit: int) -> None:
        self.world = world
        self.changes = changes
        self.attachment_size_limit = attachment_size_limit

    def command(self, command: dict, options: dict[str, Any], *, user: FakeUser, guild: FakeGuild | None,
                channel: FakeChannel, subcommand: str | None, locale: str, validate: bool,
                focused: str | None = None) -> FakeInteraction:
        """A slash command (type 2) or, with ``focused``, an autocomplete request (type 4) for it."""
        self._check_context(command, guild)
        if guild is not None:
            self._check_permitted(command, user, guild)
        kind = AUTOCOMPLETE if focused else APPLICATION_COMMAND
        interaction = self._new(kind, command["name"], user, guild, channel)
        resolved: dict[str, dict] = {}
        schema, wrap = _descend(command, subcommand)
        converted = self._options(schema, options, resolved, guild, validate=validate and not focused, focused=focused)
        data: dict = {"id": command["id"], "name": command["name"], "type": command.get("type", 1),
                      "options": wrap(converted)}
        if resolved:
            data["resolved"] = resolved
        if command.get("guild_id"):
            data["guild_id"] = command["guild_id"]
        interaction.payload = self._payload(interaction, guild, channel, user, locale, data)
        return interaction

    def message_command(self, command: dict, target: FakeMessage, *, user: FakeUser, guild: FakeGuild | None,
                        channel: FakeChannel, locale: str, bot_user: dict) -> FakeInteraction:
        """A message context-menu command (command type 3) on ``target``, resolved as Discord sends it."""
        self._check_context(command, guild)
        if guild is not None:
            self._check_permitted(command, user, guild)
        interaction = self._new(APPLICATION_COMMAND, command["name"], user, guild, channel)
        data: dict = {"id": command["id"], "name": command["name"], "type": MESSAGE_COMMAND,
                      "target_id": str(target.id),
                      "resolved": {"messages": {str(target.id): target.payload(bot_user)}}}
        if command.get("guild_id"):
            data["guild_id"] = command["guild_id"]
        interaction.payload = self._payload(interaction, guild, channel, user, locale, data)
        return interaction

    def modal_submit(self, opened_by: FakeInteraction, values: dict[str, str], *, user: FakeUser,
                     locale: str) -> FakeInteraction:
        """The submission of the modal ``opened_by`` answered with; ``values`` by text input custom id.

        Like Discord's client, it refuses a missing required value, a value outside the input's length limits,
        and a custom id the modal does not have."""
        modal = opened_by.modal
        if modal is None:
            raise InvalidInvocation(f"interaction {opened_by.id} did not answer with a modal")
        inputs = {c["custom_id"]: c for c in _walk(modal.get("components", [])) if c.get("type") == TEXT_INPUT}
        unknown = set(values) - set(inputs)
        if unknown:
            raise InvalidInvocation(f"the modal has no text inputs {sorted(unknown)}; it has {sorted(inputs)}")
        for custom_id, text_input in inputs.items():
            value = values.get(custom_id, text_input.get("value") or "")
            if not value and text_input.get("required", True):
                raise InvalidInvocation(f"text input {custom_id!r} is required")
            if value and not text_input.get("min_length", 0) <= len(value) <= text_input.get("max_length", 4000):
                raise InvalidInvocation(f"text input {custom_id!r} must be {text_input.get('min_length', 0)}-"
                                        f"{text_input.get('max_length', 4000)} characters long; got {value!r}")
        guild = self.world.guilds.get(opened_by.guild_id) if opened_by.guild_id else None
        channel = self.world.channel_by_id(opened_by.channel_id)
        assert channel is not None
        interaction = self._new(MODAL_SUBMIT, modal["custom_id"], user, guild, channel, message=opened_by.message)
        data = {"custom_id": modal["custom_id"],
                "components": _submitted(modal.get("components", []), values, inputs)}
        interaction.payload = self._payload(interaction, guild, channel, user, locale, data)
        if opened_by.message is not None:
            interaction.payload["message"] = opened_by.payload["message"]
        return interaction

    def component(self, message: FakeMessage, custom_id: str, component_type: int, values: list[str] | None,
                  *, user: FakeUser, bot_user: dict, locale: str) -> FakeInteraction:
        """A component interaction (type 3) on ``message``."""
        guild = self.world.guilds.get(message.guild_id) if message.guild_id else None
        channel = self.world.channel_by_id(message.channel_id)
        assert channel is not None, f"message {message.id} is in an unknown channel"
        interaction = self._new(MESSAGE_COMPONENT, custom_id, user, guild, channel, message=message)
        data: dict = {"custom_id": custom_id, "component_type": component_type}
        if values is not None:
            data["values"] = values
        interaction.payload = self._payload(interaction, guild, channel, user, locale, data)
        interaction.payload["message"] = message.payload(bot_user)
        return interaction

    def _new(self, kind: int, name: str, user: FakeUser, guild: FakeGuild | None, channel: FakeChannel,
             message: FakeMessage | None = None) -> FakeInteraction:
        return FakeInteraction(interaction_id=self.world.ids.next(), type=kind, name=name, user=user,
                               guild_id=guild.id if guild else None, channel_id=channel.id, changes=self.changes,
                               message=message)

    def _check_context(self, command: dict, guild: FakeGuild | None) -> None:
        """Discord offers a command only in its ``contexts`` (0 guild, 1 bot DM, 2 private channel), and a
        guild-installed command only in guilds."""
        context = 0 if guild is not None else 1
        contexts = command.get("contexts")
        if contexts is not None and context not in contexts:
            raise CommandNotPermitted(f"/{command['name']} is registered for contexts {contexts}, not {context}; "
                                      "Discord would not show it here")
        if command.get("dm_permission") is False and guild is None and contexts is None:
            raise CommandNotPermitted(f"/{command['name']} has dm_permission false; Discord would not show it in DMs")

    def _check_permitted(self, command: dict, user: FakeUser, guild: FakeGuild) -> None:
        required = command.get("default_member_permissions")
        if required is None:
            return
        granted = guild.permissions_of(user)
        if not has(granted, "administrator") and (granted & int(required)) != int(required):
            raise CommandNotPermitted(
                f"/{command['name']} needs permissions {required} (default_member_permissions) and {user.name} "
                f"has {granted}; Discord would not show or deliver it"
            )

    def _payload(self, interaction: FakeInteraction, guild: FakeGuild | None, channel: FakeChannel,
                 user: FakeUser, locale: str, data: dict) -> dict:
        payload: dict = {
            "id": str(interaction.id),
            "application_id": str(self.world.application_id),
            "type": interaction.type,
            "token": interaction.token,
            "version": 1,
            "data": data,
            "channel_id": str(channel.id),
            "locale": locale,
            "entitlements": [],
            "entitlement_sku_ids": [],
            "authorizing_integration_owners": {"0": str(guild.id)} if guild else {"1": str(user.id)},
            "attachment_size_limit": self.attachment_size_limit,
            "app_permissions": str(self.world.bot_permissions_in(guild)),
        }
        channel_payload = channel.payload()
        if guild is not None:
            permissions = guild.permissions_of(user)
            channel_payload["permissions"] = str(permissions)
            payload.update(
                guild_id=str(guild.id),
                guild={"id": str(guild.id), "locale": "en-US", "features": []},
                guild_locale="en-US",
                member=guild.member_payload(user, with_permissions=True),
                context=0,
            )
        else:
            payload.update(user=user.payload(), context=1)
        payload["channel"] = channel_payload
        return payload

    def _options(self, schema: list[dict], given: dict[str, Any], resolved: dict[str, dict], guild: FakeGuild | None,
                 *, validate: bool, focused: str | None) -> list[dict]:
        by_name = {option["name"]: option for option in schema}
        unknown = set(given) - set(by_name)
        if unknown:
            raise InvalidInvocation(f"unknown option(s) {sorted(unknown)}; the command has {sorted(by_name)}")
        if validate:
            missing = [name for name, option in by_name.items() if option.get("required") and name not in given]
            if missing:
                raise InvalidInvocation(f"required option(s) missing: {missing}")
        if focused is not None and focused not in by_name:
            raise InvalidInvocation(f"focused option {focused!r} is not an option of the command")
        converted = []
        for name, value in given.items():
            option = by_name[name]
            if name == focused:
                converted.append({"name": name, "type": option["type"], "value": str(value), "focused": True})
                continue
            converted.append({"name": name, "type": option["type"],
                              "value": self._value(option, value, resolved, guild, validate)})
        return converted

    def _value(self, option: dict, value: Any, resolved: dict[str, dict], guild: FakeGuild | None, validate: bool) -> Any:
        kind = option["type"]
        name = option["name"]
        if kind == 11:
            attachment = value.payload() if isinstance(value, FakeAttachment) else value
            if not isinstance(attachment, dict) or "id" not in attachment:
                raise InvalidInvocation(f"option {name!r} takes an attachment dict from fake.add_attachment(), got {value!r}")
            resolved.setdefault("attachments", {})[str(attachment["id"])] = attachment
            return str(attachment["id"])
        if kind in (6, 9) and isinstance(value, FakeUser):
            resolved.setdefault("users", {})[str(value.id)] = value.payload()
            if guild is not None:
                member = guild.member_payload(value, with_permissions=True)
                del member["user"]
                resolved.setdefault("members", {})[str(value.id)] = member
            return str(value.id)
        if kind == 7 and isinstance(value, FakeChannel):
            allowed = option.get("channel_types")
            if validate and allowed and value.type not in allowed:
                raise InvalidInvocation(f"option {name!r} takes channels of types {allowed}; "
                                        f"#{value.name} is of type {value.type}")
            channel = value.payload()
            channel["permissions"] = str(guild.permissions_of(self.world.bot)) if guild else "0"
            resolved.setdefault("channels", {})[str(value.id)] = channel
            return str(value.id)
        if kind in (8, 9) and isinstance(value, FakeRole):
            resolved.setdefault("roles", {})[str(value.id)] = value.payload()
            return str(value.id)
        if kind in (6, 7, 8, 9):
            raise InvalidInvocation(f"option {name!r} ({OPTION_TYPES[kind]}) takes a Fake{OPTION_TYPES[kind].title()} object")
        return _scalar(option, value, validate)


def _scalar(option: dict, value: Any, validate: bool) -> Any:
    kind = option["type"]
    name = option["name"]
    expected = {3: str, 4: int, 5: bool, 10: (int, float)}[kind]
    if not isinstance(value, expected) or (kind in (4, 10) and isinstance(value, bool)):
        raise InvalidInvocation(f"option {name!r} is a {OPTION_TYPES[kind]}; got {value!r}")
    if not validate:
        return value
    choices = option.get("choices")
    if choices and value not in [choice["value"] for choice in choices]:
        raise InvalidInvocation(f"option {name!r} must be one of {[c['value'] for c in choices]}; got {value!r}")
    low, high = option.get("min_value"), option.get("max_value")
    if (low is not None and value < low) or (high is not None and value > high):
        raise InvalidInvocation(f"option {name!r} must be within [{low}, {high}]; got {value!r}")
    if kind == 3:
        if len(value) > option.get("max_length", 6000) or len(value) < option.get("min_length", 0):
            raise InvalidInvocation(f"option {name!r} has a length outside the command's limits: {value!r}")
    return value


def _descend(command: dict, subcommand: str | None) -> tuple[list[dict], Callable[[list[dict]], list[dict]]]:
    """The option schema of the (sub)command to invoke, and how to wrap its options back into the tree."""
    schema: list[dict] = command.get("options") or []
    if not subcommand:
        if any(option["type"] in (1, 2) for option in schema):
            raise InvalidInvocation(f"/{command['name']} has subcommands; pass subcommand=...")
        return schema, lambda options: options
    path: list[tuple[str, int]] = []
    for part in subcommand.split():
        option = next((o for o in schema if o["name"] == part and o["type"] in (1, 2)), None)
        if option is None:
            known = [o["name"] for o in schema if o["type"] in (1, 2)]
            raise InvalidInvocation(f"/{command['name']} has no subcommand {part!r}; it has {known}")
        path.append((part, option["type"]))
        schema = option.get("options") or []

    def wrap(options: list[dict]) -> list[dict]:
        for name, kind in reversed(path):
            options = [{"name": name, "type": kind, "options": options}]
        return options

    return schema, wrap


def _walk(components: list[dict]):
    """Every component in a tree of action rows and labels."""
    for component in components:
        yield component
        yield from _walk(component.get("components", []))
        if "component" in component:
            yield from _walk([component["component"]])


def _submitted(components: list[dict], values: dict[str, str], inputs: dict[str, dict]) -> list[dict]:
    """A modal's layout as Discord submits it: the same rows and labels, each text input with its value."""
    out = []
    for component in components:
        if component.get("type") == TEXT_INPUT:
            custom_id = component["custom_id"]
            out.append({"type": TEXT_INPUT, "custom_id": custom_id,
                        "value": values.get(custom_id, inputs[custom_id].get("value") or "")})
        elif "component" in component:
            out.append({"type": component["type"], "id": component.get("id", 0),
                        "component": _submitted([component["component"]], values, inputs)[0]})
        elif "components" in component:
            out.append({"type": component["type"], "components": _submitted(component["components"], values, inputs)})
    return out
