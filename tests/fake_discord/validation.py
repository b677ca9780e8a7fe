"""Discord's documented limits on what the bot sends, so a payload the real API would refuse is refused here too.

Errors use Discord's "Invalid Form Body" shape (code 50035): a tree keyed by field path whose leaves hold ``_errors``.
"""

from __future__ import annotations

import re

IS_COMPONENTS_V2 = 1 << 15
MESSAGE_FLAGS_ALLOWED = (1 << 2) | (1 << 6) | (1 << 12) | IS_COMPONENTS_V2
_COMMAND_NAME = re.compile(r"^[-_'\w]{1,32}$")
# User and message (context-menu) commands: any 1-32 characters, spaces and punctuation included.
_MENU_NAME = re.compile(r"^\S(?:.{0,30}\S)?$")


class FormErrors:
    """Collects errors under field paths, in the nested shape Discord answers with."""

    def __init__(self) -> None:
        self.tree: dict = {}

    def add(self, path: tuple, code: str, message: str) -> None:
        node = self.tree
        for key in path:
            node = node.setdefault(str(key), {})
        node.setdefault("_errors", []).append({"code": code, "message": message})

    def __bool__(self) -> bool:
        return bool(self.tree)

    def summary(self) -> str:
        """One line per error, ``path: message``, for logs and assertion messages."""
        lines: list[str] = []

        def walk(node: dict, path: list[str]) -> None:
            for key, value in node.items():
                if key == "_errors":
                    lines.extend(f"{'.'.join(path)}: {e['message']}" for e in value)
                else:
                    walk(value, path + [key])

        walk(self.tree, [])
        return "; ".join(lines)


def _max_length(errors: FormErrors, path: tuple, value: object, limit: int, *, minimum: int = 0) -> int:
    if value is None:
        return 0
    if not isinstance(value, str):
        errors.add(path, "STRING_TYPE_CONVERT", "Could not interpret value as string.")
        return 0
    if len(value) > limit:
        errors.add(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")
    elif len(value) < minimum:
        errors.add(path, "BASE_TYPE_MIN_LENGTH", f"Must be {minimum} or more in length.")
    return len(value)


def check_message(payload: dict, *, file_count: int, creating: bool, errors: FormErrors, prefix: tuple = ()) -> None:
    """Content, embed, component, attachment and flag limits of a message create or edit."""
    _max_length(errors, prefix + ("content",), payload.get("content"), 2000)
    embeds = payload.get("embeds") or []
    if len(embeds) > 10:
        errors.add(prefix + ("embeds",), "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
    total = 0
    for i, embed in enumerate(embeds):
        path = prefix + ("embeds", i)
        total += _max_length(errors, path + ("title",), embed.get("title"), 256)
        total += _max_length(errors, path + ("description",), embed.get("description"), 4096)
        total += _max_length(errors, path + ("footer", "text"), (embed.get("footer") or {}).get("text"), 2048)
        total += _max_length(errors, path + ("author", "name"), (embed.get("author") or {}).get("name"), 256)
        fields = embed.get("fields") or []
        if len(fields) > 25:
            errors.add(path + ("fields",), "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
        for j, embed_field in enumerate(fields):
            total += _max_length(errors, path + ("fields", j, "name"), embed_field.get("name"), 256, minimum=1)
            total += _max_length(errors, path + ("fields", j, "value"), embed_field.get("value"), 1024, minimum=1)
    if total > 6000:
        errors.add(prefix + ("embeds",), "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000")
    flags = payload.get("flags") or 0
    if flags & ~MESSAGE_FLAGS_ALLOWED:
        errors.add(prefix + ("flags",), "MESSAGE_FLAGS_INVALID", f"Flags {flags} contain bits a bot cannot set.")
    if not flags & IS_COMPONENTS_V2:
        _check_action_rows(payload.get("components") or [], errors, prefix + ("components",))
    attachments = payload.get("attachments") or []
    if len(attachments) > 10 or file_count > 10:
        errors.add(prefix + ("attachments",), "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
    if creating and not (payload.get("content") or embeds or payload.get("components") or file_count or payload.get("poll")):
        errors.add(prefix + ("content",), "BASE_TYPE_REQUIRED", "Cannot send an empty message.")


def _check_action_rows(rows: list[dict], errors: FormErrors, path: tuple) -> None:
    if len(rows) > 5:
        errors.add(path, "BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer in length.")
    seen: set[str] = set()
    for i, row in enumerate(rows):
        if row.get("type") != 1:
            errors.add(path + (i, "type"), "COMPONENT_LAYOUT_WIDTH_EXCEEDED", "Top-level components must be action rows.")
            continue
        children = row.get("components") or []
        if not 1 <= len(children) <= 5:
            errors.add(path + (i, "components"), "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 5 in length.")
        for j, child in enumerate(children):
            child_path = path + (i, "components", j)
            custom_id = child.get("custom_id")
            if child.get("type") == 2 and child.get("style") == 5:
                if not child.get("url"):
                    errors.add(child_path + ("url",), "BASE_TYPE_REQUIRED", "This field is required")
                continue
            if child.get("type") == 2 and child.get("style") == 6:
                continue
            if not custom_id:
                errors.add(child_path + ("custom_id",), "BASE_TYPE_REQUIRED", "This field is required")
                continue
            _max_length(errors, child_path + ("custom_id",), custom_id, 100, minimum=1)
            _max_length(errors, child_path + ("label",), child.get("label"), 80)
            if custom_id in seen:
                errors.add(child_path + ("custom_id",), "COMPONENT_CUSTOM_ID_DUPLICATED", "Component custom id cannot be duplicated")
            seen.add(custom_id)


def check_commands(commands: list[dict], errors: FormErrors) -> None:
    """Application command definitions as in a bulk overwrite (PUT .../commands)."""
    if len(commands) > 100:
        errors.add((), "BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer in length.")
    seen: set[tuple[int, str]] = set()
    for i, command in enumerate(commands):
        check_command(command, errors, (i,))
        key = (command.get("type", 1), command.get("name", ""))
        if key in seen:
            errors.add((i, "name"), "APPLICATION_COMMANDS_DUPLICATE_NAME", f"Application command names must be unique: {key[1]}")
        seen.add(key)


def check_command(command: dict, errors: FormErrors, path: tuple = ()) -> None:
    chat_input = command.get("type", 1) == 1
    _check_name(command.get("name"), errors, path + ("name",), lowercase=chat_input)
    if chat_input:
        _max_length(errors, path + ("description",), command.get("description"), 100, minimum=1)
        _check_options(command.get("options") or [], errors, path + ("options",))


def _check_name(name: object, errors: FormErrors, path: tuple, *, lowercase: bool) -> None:
    pattern = _COMMAND_NAME if lowercase else _MENU_NAME
    if not isinstance(name, str) or not pattern.match(name) or (lowercase and name != name.lower()):
        errors.add(path, "APPLICATION_COMMAND_INVALID_NAME", f"Command name is invalid: {name!r}")


def _check_options(options: list[dict], errors: FormErrors, path: tuple) -> None:
    if len(options) > 25:
        errors.add(path, "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
    optional_seen = False
    names: set[str] = set()
    for i, option in enumerate(options):
        option_path = path + (i,)
        _check_name(option.get("name"), errors, option_path + ("name",), lowercase=True)
        _max_length(errors, option_path + ("description",), option.get("description"), 100, minimum=1)
        if option.get("name") in names:
            errors.add(option_path + ("name",), "APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS", "Option names must be unique")
        names.add(option.get("name"))
        if option.get("type") in (1, 2):
            _check_options(option.get("options") or [], errors, option_path + ("options",))
            continue
        if option.get("required"):
            if optional_seen:
                errors.add(option_path + ("required",), "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                           "Required options must be placed before non-required options")
        else:
            optional_seen = True
        choices = option.get("choices") or []
        if len(choices) > 25:
            errors.add(option_path + ("choices",), "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
        if choices and option.get("autocomplete"):
            errors.add(option_path + ("autocomplete",), "APPLICATION_COMMAND_AUTOCOMPLETE_INVALID",
                       "Autocomplete cannot be set on an option with choices")
        for j, choice in enumerate(choices):
            _max_length(errors, option_path + ("choices", j, "name"), choice.get("name"), 100, minimum=1)


def check_choices(choices: object, errors: FormErrors) -> None:
    """An autocomplete result: at most 25 choices with names of 1-100 characters."""
    if not isinstance(choices, list):
        errors.add(("data", "choices"), "BASE_TYPE_REQUIRED", "This field is required")
        return
    if len(choices) > 25:
        errors.add(("data", "choices"), "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
    for i, choice in enumerate(choices):
        _max_length(errors, ("data", "choices", i, "name"), choice.get("name"), 100, minimum=1)
        if isinstance(choice.get("value"), str):
            _max_length(errors, ("data", "choices", i, "value"), choice.get("value"), 100)
