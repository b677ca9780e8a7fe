"""Running the real bot (``python -m bot``) as a subprocess against the fake Discord.

The bot gets a config written here: Discord URLs pointing at the fake, downloads allowed
from the fake's CDN on 127.0.0.1, one CPU worker, and quality presets shrunk to a few
dozen pixels and a few steps so the real engine finishes in seconds.  ``high`` is kept
long on purpose: tests use it for jobs that must still be running when they act.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from tests.fake_discord import FakeDiscord, FakeInteraction, FakeMessage, FakeUser

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 180.0
DONE_TITLE = "✅ Done"
FINAL_TITLES = ("✅ Done", "❌ Failed", "🛑 Cancelled")


def bot_fake_discord(**options: Any) -> FakeDiscord:
    """A fake Discord for a test bot on a shared, loaded machine: Discord's 3 s acknowledgement deadline
    is not enforced, since a burst of interactions while a worker computes makes it depend on the load.
    :func:`stylize` checks instead that the bot deferred before anything else, and
    tests/reliability/test_ack_deadline.py holds the bot to the deadline while nothing else runs in it."""
    return FakeDiscord(ack_deadline=None, **options)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def small_image(path: Path, long_side: int, fmt: str) -> tuple[bytes, int, int]:
    """A real photo or painting shrunk to ``long_side``, encoded as ``fmt``: (bytes, width, height)."""
    image = Image.open(path).convert("RGB")
    image.thumbnail((long_side, long_side))
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue(), image.width, image.height


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return repr(value)


def write_config(folder: Path, fake: FakeDiscord, overrides: dict[str, dict[str, Any]] | None = None) -> Path:
    """A config for a test bot in ``folder``; ``overrides`` replace or add keys per section."""
    sections: dict[str, dict[str, Any]] = {
        "discord": {"api_base_url": fake.api_base_url, "gateway_url": fake.gateway_url},
        "downloads": {
            "allowed_hosts": ["127.0.0.1"],
            "allowed_schemes": ["http"],
            "allow_explicit_port": True,
            "max_bytes": 300_000,
            "timeout_s": 3.0,
            "max_pixels": 1_000_000,
        },
        "pool": {"devices": ["cpu"], "workers_per_device": 1, "cpu_threads": 1, "preview_interval_s": 0.2},
        "limits": {"cooldown_s": 0.0, "max_jobs_per_user": 2, "queue_size": 8, "min_size": 32},
        "quality.fast": {"size": 32, "steps": 2},
        "quality.balanced": {"size": 40, "steps": 4},
        "quality.high": {"size": 48, "steps": 3000},
        "progress": {"edit_interval_s": 0.3, "preview_size": 32, "queue_edit_interval_s": 0.3},
        "storage": {"database": str(folder / "nst.sqlite3"), "data_dir": str(folder / "data")},
        "delivery": {"attempts": 3, "backoff_s": 0.2, "token_margin_s": 0.0},
        "http": {"host": "127.0.0.1", "port": free_port()},
        "shutdown": {"grace_s": 0.0},
        "logging": {"level": "INFO"},
    }
    for section, values in (overrides or {}).items():
        sections.setdefault(section, {}).update(values)
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {_toml(value)}" for key, value in values.items())
        lines.append("")
    path = folder / "config.toml"
    path.write_text("\n".join(lines))
    return path


@dataclass
class BotProcess:
    """``python -m bot`` running in a subprocess, its output in a log file."""

    process: asyncio.subprocess.Process
    log_path: Path
    http_port: int

    @classmethod
    async def start(
        cls, config_path: Path, fake: FakeDiscord, log_name: str = "bot.log", args: tuple[str, ...] = ()
    ) -> BotProcess:
        """``python -m bot --config config_path *args``, logging to ``log_name`` beside the config."""
        log_path = config_path.parent / log_name
        env = dict(os.environ, DISCORD_TOKEN=fake.token, PYTHONUNBUFFERED="1")
        env.pop("DISCORD_TOKEN_FILE", None)
        with log_path.open("wb") as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                "--config",
                str(config_path),
                *args,
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )
        port = int(next(line for line in config_path.read_text().splitlines() if line.startswith("port = "))[7:])
        return cls(process, log_path, port)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def wait_ready(self, fake: FakeDiscord, identifies: int = 1) -> None:
        """Until the bot's gateway session number ``identifies`` is up; fails with the log if the bot exits."""
        ready = asyncio.create_task(fake.wait_ready(identifies, timeout=START_TIMEOUT_S))
        exited = asyncio.create_task(self.process.wait())
        done, _ = await asyncio.wait({ready, exited}, return_when=asyncio.FIRST_COMPLETED)
        if exited in done:
            ready.cancel()
            raise AssertionError(f"the bot exited with {self.process.returncode} while starting:\n{self.log()[-5000:]}")
        exited.cancel()
        ready.result()

    async def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM, then the exit code."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(timeout):
            return await self.process.wait()

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


@dataclass
class Images:
    """Attachment payloads of small real images, registered on the fake's CDN."""

    content: dict
    style: dict


def add_images(fake: FakeDiscord, images_dir: Path) -> Images:
    content, width, height = small_image(images_dir / "tubingen.jpg", 48, "PNG")
    style, style_width, style_height = small_image(images_dir / "starry_night.jpg", 48, "JPEG")
    return Images(
        content=fake.add_attachment(content, "tubingen.png", width=width, height=height),
        style=fake.add_attachment(style, "starry_night.jpg", width=style_width, height=style_height),
    )


async def stylize(fake: FakeDiscord, user: FakeUser, **options: Any) -> FakeInteraction:
    """Invoke /stylize as ``user`` and wait for its acknowledgement, which must be a deferral."""
    interaction = await fake.invoke_command("stylize", options, user=user)
    await interaction.wait_acknowledged()
    assert interaction.ack_type == 5, f"/stylize must be deferred before anything else: {interaction!r}"
    return interaction


async def accepted_status(interaction: FakeInteraction, timeout: float = 30.0) -> FakeMessage:
    """The public status message of an accepted /stylize (fails with the refusal if it was refused)."""
    original = await interaction.wait_original(timeout=timeout)
    assert "is queued" in original.content, f"not accepted: {original.content!r}"
    return await interaction.wait_followup(timeout=timeout)


async def refusal(interaction: FakeInteraction, timeout: float = 30.0) -> str:
    """The ephemeral refusal of an interaction."""
    original = await interaction.wait_original(timeout=timeout)
    assert original.ephemeral, "refusals must be ephemeral"
    assert original.content.startswith("⚠️"), f"not a refusal: {original.content!r}"
    assert not interaction.followups, "a refused request must not post anything public"
    return original.content


def title(message: FakeMessage) -> str:
    return message.embeds[0].get("title", "") if message.embeds else ""


async def wait_title(
    fake: FakeDiscord, message: FakeMessage, wanted: str | tuple[str, ...], timeout: float = 60.0
) -> None:
    wanted = (wanted,) if isinstance(wanted, str) else wanted
    await fake.wait_for(lambda: title(message) in wanted, timeout, f"message {message.id} to show {wanted}")


def finals_for(fake: FakeDiscord, job_prefix: str) -> list[FakeMessage]:
    """Every live message that is a final answer for the job whose id starts with ``job_prefix``."""
    return [
        message
        for message in fake.messages
        if not message.deleted
        and title(message) in FINAL_TITLES
        and message.embeds[0].get("footer", {}).get("text", "").startswith(f"Job {job_prefix}")
    ]


def job_prefix(message: FakeMessage) -> str:
    """The 8-character job id shown in a status message's footer."""
    return message.embeds[0]["footer"]["text"].split()[1]
