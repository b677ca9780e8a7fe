"""The event-loop lag watch reports a blocked loop (and nothing much on an idle one)."""

from __future__ import annotations

import asyncio
import time

from bot.looplag import watch_loop_lag


async def test_a_blocked_event_loop_shows_up_as_lag():
    lags: list[float] = []
    watch = asyncio.create_task(watch_loop_lag(lags.append, interval=0.05))
    try:
        await asyncio.sleep(0.01)
        # Block the loop as a synchronous decode on it would: the watch wakes at least this much late.
        time.sleep(0.3)
        while len(lags) < 2:
            await asyncio.sleep(0.05)
    finally:
        watch.cancel()
    assert max(lags) >= 0.25 - 0.05
    assert all(lag >= 0 for lag in lags)
