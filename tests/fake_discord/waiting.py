"""Waiting for the fake's state to change, driven by an asyncio.Condition that every change notifies."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class Changes:
    """Everything that mutates the fake calls ``notify``; waiters re-check their predicate on each change."""

    def __init__(self) -> None:
        self._condition = asyncio.Condition()

    async def notify(self) -> None:
        async with self._condition:
            self._condition.notify_all()

    async def wait_for(self, predicate: Callable[[], T], timeout: float, what: str) -> T:
        """The first truthy value of ``predicate()``; TimeoutError naming ``what`` after ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                async with self._condition:
                    return await self._condition.wait_for(predicate)
        except TimeoutError:
            raise TimeoutError(f"fake_discord: timed out after {timeout} s waiting for {what}") from None
