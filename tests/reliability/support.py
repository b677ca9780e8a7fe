"""What the reliability tests share: the real bot on the fake Discord, and ways to look inside its processes.

The bot itself is started with :mod:`tests.bot.harness` (tiny quality presets, one CPU
worker); this module adds a world that hands out fresh users, reads ``/healthz``, finds the
pool's worker processes under the bot's PID, and waits for a foreign process to exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from tests.bot.harness import BotProcess, Images, add_images, bot_fake_discord, write_config
from tests.fake_discord import FakeDiscord, FakeUser

FAILED_TITLE = "❌ Failed"
RUNNING_TITLE = "🖌️ Stylising"

# Far longer than any healthy wait below; reaching it means something hangs.
PROCESS_EXIT_TIMEOUT_S = 60.0


@dataclass
class BotWorld:
    """A fake Discord, the bot process logged in to it, and two small real images on its CDN."""

    fake: FakeDiscord
    bot: BotProcess
    images: Images
    config_path: Path
    users_made: int = 0

    def user(self, permissions: object = None) -> FakeUser:
        """A user nobody else in the test run has used, so per-user limits never leak between tests."""
        self.users_made += 1
        return self.fake.add_user(f"user{self.users_made}", permissions=permissions)

    async def health(self) -> tuple[int, dict[str, Any]]:
        """``/healthz``: the HTTP status and its JSON body."""
        url = f"http://127.0.0.1:{self.bot.http_port}/healthz"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            return response.status, await response.json()

    async def wait_healthy(self, timeout: float = 30.0) -> None:
        """Until ``/healthz`` answers 200. discord.py reports ready a moment after the gateway's READY,
        and another process offers no event to await, so this asks a few times a second."""
        async with asyncio.timeout(timeout):
            while (await self.health())[0] != 200:
                await asyncio.sleep(0.1)

    def workers(self) -> list[int]:
        return worker_pids(self.bot.process.pid)


@contextlib.asynccontextmanager
async def running_bot(
    folder: Path, images_dir: Path, overrides: dict[str, dict[str, Any]] | None = None
) -> AsyncIterator[BotWorld]:
    """Start ``python -m bot`` on a fresh fake Discord; on exit SIGTERM it and check it stopped cleanly."""
    async with bot_fake_discord() as fake:
        config = write_config(folder, fake, overrides)
        bot = await BotProcess.start(config, fake)
        try:
            await bot.wait_ready(fake)
            await fake.wait_for_command("stylize")
            world = BotWorld(fake, bot, add_images(fake, images_dir), config)
            await world.wait_healthy()
            yield world
            assert await bot.terminate() == 0, bot.log()[-3000:]
        finally:
            await bot.kill()
        log = bot.log()
        assert fake.token not in log, "the token must never be logged"
        assert not unexpected_tracebacks(log), "\n".join(unexpected_tracebacks(log))


def unexpected_tracebacks(log: str) -> list[str]:
    """Log records with a traceback, except discord.py's own report of a refused gateway reconnect."""
    records = re.split(r"\n(?=\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", log)
    return [
        record
        for record in records
        if "Traceback" in record and "discord.client: Attempting a reconnect" not in record.split("\n", 1)[0]
    ]


def child_pids(pid: int) -> list[int]:
    """The live processes whose parent is ``pid``."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces: the parent PID is the second field after it.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            children.append(int(entry.name))
    return children


def worker_pids(bot_pid: int) -> list[int]:
    """The pool's worker processes: the bot's children that multiprocessing started with "spawn"."""
    workers = []
    for pid in child_pids(bot_pid):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in command:
            workers.append(pid)
    return workers


def rss_bytes(pid: int) -> int:
    """Resident memory of a process, from ``/proc/<pid>/status``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise ValueError(f"no VmRSS for process {pid}")


async def wait_process_exit(pid: int, timeout: float = PROCESS_EXIT_TIMEOUT_S) -> None:
    """Until process ``pid`` (not necessarily our child) has exited; a pidfd becomes readable when it does."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    exited = loop.create_future()
    loop.add_reader(pidfd, lambda: exited.done() or exited.set_result(None))
    try:
        async with asyncio.timeout(timeout):
            await exited
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)
