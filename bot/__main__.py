"""``python -m bot --config config.toml`` (or ``nst-bot``): run the bot until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

import discord

from bot.app import create_bot, point_discord_at
from bot.config import Config, ConfigError, load_config, load_token
from bot.datalock import DataFolderBusy
from bot.store import StoreUnusable
from nst_engine.pool import PoolError

log = logging.getLogger("bot")


async def run(config: Config, token: str, *, force_sync: bool = False) -> None:
    """Run the bot; a SIGTERM or SIGINT closes it gracefully and returns."""
    bot = create_bot(config, force_sync=force_sync)
    loop = asyncio.get_running_loop()
    closing: list[asyncio.Task[None]] = []

    def stop(signame: str) -> None:
        log.info("received %s", signame)
        if not closing:
            closing.append(asyncio.create_task(bot.close()))

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop, sig.name)
    async with bot:
        await bot.start(token)
    if closing:
        await closing[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nst-bot", description="A Discord bot for neural style transfer.")
    parser.add_argument("--config", default="config.toml", help="path to the TOML config (default: config.toml)")
    parser.add_argument("--check", action="store_true", help="only check the config and the token, then exit")
    parser.add_argument(
        "--sync", action="store_true", help="register the commands with Discord even if they did not change"
    )
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        token = load_token(config)
    except ConfigError as exc:
        print(f"nst-bot: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        print(f"nst-bot: {args.config} is valid")
        return 0
    logging.basicConfig(
        level=getattr(logging, config.logging.level), format="%(asctime)s %(levelname)-7s %(name)s: %(message)s"
    )
    point_discord_at(config.discord)
    try:
        asyncio.run(run(config, token, force_sync=args.sync))
    except discord.LoginFailure:
        log.error("Discord rejected the token; check DISCORD_TOKEN or the token file")
        return 1
    except PoolError as exc:
        log.error("the worker pool could not start: %s", exc)
        return 1
    except (DataFolderBusy, StoreUnusable) as exc:
        log.error("cannot start: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
