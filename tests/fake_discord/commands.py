"""Application commands the bot registered, globally and per guild, as Discord stores them."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

from .ids import SnowflakeFactory


@dataclass
class CommandSync:
    """One bulk overwrite the bot made (``guild_id`` None for global)."""

    guild_id: int | None
    names: list[str]
    at: float = field(default_factory=time.monotonic)


class CommandRegistry:
    def __init__(self, ids: SnowflakeFactory, application_id: int) -> None:
        self._ids = ids
        self._application_id = application_id
        self.scopes: dict[int | None, dict[tuple[int, str], dict]] = {None: {}}
        self.syncs: list[CommandSync] = []

    def overwrite(self, guild_id: int | None, definitions: list[dict]) -> list[dict]:
        """Replace a scope's commands, keeping ids of commands that still exist (as Discord does)."""
        old = self.scopes.get(guild_id, {})
        new: dict[tuple[int, str], dict] = {}
        for definition in definitions:
            key = (definition.get("type", 1), definition["name"])
            previous = old.get(key)
            new[key] = self._stored(guild_id, definition, previous["id"] if previous else None)
        self.scopes[guild_id] = new
        self.syncs.append(CommandSync(guild_id, [name for _, name in new]))
        return list(new.values())

    def upsert(self, guild_id: int | None, definition: dict) -> dict:
        scope = self.scopes.setdefault(guild_id, {})
        key = (definition.get("type", 1), definition["name"])
        previous = scope.get(key)
        scope[key] = self._stored(guild_id, definition, previous["id"] if previous else None)
        return scope[key]

    def delete(self, guild_id: int | None, command_id: int) -> bool:
        scope = self.scopes.get(guild_id, {})
        for key, command in list(scope.items()):
            if int(command["id"]) == command_id:
                del scope[key]
                return True
        return False

    def list(self, guild_id: int | None) -> list[dict]:
        return list(self.scopes.get(guild_id, {}).values())

    def get_by_id(self, guild_id: int | None, command_id: int) -> dict | None:
        return next((c for c in self.list(guild_id) if int(c["id"]) == command_id), None)

    def find(self, name: str, guild_id: int | None, command_type: int = 1) -> dict | None:
        """The command a user in ``guild_id`` sees under ``name``: the guild's own first, then the global one."""
        if guild_id is not None:
            command = self.scopes.get(guild_id, {}).get((command_type, name))
            if command is not None:
                return command
        return self.scopes[None].get((command_type, name))

    def names(self) -> list[str]:
        return sorted({name for scope in self.scopes.values() for _, name in scope})

    def _stored(self, guild_id: int | None, definition: dict, command_id: int | None) -> dict:
        stored = copy.deepcopy(definition)
        stored.setdefault("type", 1)
        stored.setdefault("options", [])
        stored.setdefault("description", "")  # context-menu commands have none; Discord answers with ""
        permissions = stored.get("default_member_permissions")
        # Discord answers with permission bits as a string, whatever the client sent.
        stored["default_member_permissions"] = None if permissions is None else str(int(permissions))
        stored.setdefault("nsfw", False)
        stored["id"] = str(command_id or self._ids.next())
        stored["application_id"] = str(self._application_id)
        stored["version"] = str(self._ids.next())
        if guild_id is not None:
            stored["guild_id"] = str(guild_id)
        return stored
