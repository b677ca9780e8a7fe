"""How late the event loop runs: the one figure that says whether anything blocks it.

Every interaction must be acknowledged within Discord's 3 seconds, and the gateway's
heartbeat must go out on time; both only happen when the loop is free.  A task that asks
to wake up every ``interval`` seconds measures how much later than asked it did.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def watch_loop_lag(record: Callable[[float], None], interval: float = 0.1) -> None:
    """Call ``record(seconds late)`` after each ``interval``-second sleep, until cancelled."""
    loop = asyncio.get_running_loop()
    while True:
        asked = loop.time()
        await asyncio.sleep(interval)
        record(max(0.0, loop.time() - asked - interval))
