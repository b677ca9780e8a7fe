"""Snowflake ids and timestamps in Discord's formats.

discord.py derives times from snowflakes (e.g. the delete-message sub-rate-limit), so ids carry a real timestamp.
"""

from __future__ import annotations

import datetime
import itertools
import secrets
import time

DISCORD_EPOCH_MS = 1_420_070_400_000


class SnowflakeFactory:
    """Makes increasing, unique snowflakes stamped with the current time."""

    def __init__(self) -> None:
        self._counter = itertools.count()
        self._last = 0

    def next(self) -> int:
        """A fresh snowflake, strictly greater than every earlier one."""
        stamp = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        candidate = stamp | (next(self._counter) & 0xFFF)
        self._last = max(candidate, self._last + 1)
        return self._last


def iso_now() -> str:
    """The current UTC time as Discord writes it (ISO 8601 with offset)."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


def new_token(prefix: str) -> str:
    """An opaque, unguessable token such as Discord hands out for interactions and sessions."""
    return f"{prefix}.{secrets.token_urlsafe(24)}"
