"""Bot parts driven in the test's own process: a real discord.py client logged in to the fake Discord."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import discord

from bot.store import JobStore
from tests.fake_discord import FakeDiscord


@asynccontextmanager
async def logged_in(tmp_path: Path, **client_options: object) -> AsyncIterator[tuple[FakeDiscord, discord.Client, JobStore]]:
    """A fake Discord, a discord.py client logged in to it over REST, and an empty job store under ``tmp_path``."""
    async with FakeDiscord() as fake:
        with fake.patch_discord_py():
            client = discord.Client(intents=discord.Intents.none(), **client_options)
            await client.login(fake.token)
            store = await JobStore.open(tmp_path / "jobs.sqlite3")
            try:
                yield fake, client, store
            finally:
                await store.close()
                await client.close()
