"""Hostile load: the real bot on the fake Discord while hostile users flood it with costly files.

    python -m benchmarks.hostile_load                   # 10 hostile + 10 ordinary users for 40 s
    python -m benchmarks.hostile_load --duration 20

Run it from the repository root. It starts ``python -m bot`` against the fake Discord of
``tests/fake_discord`` (one CPU worker, jobs of 32 px x 2 steps, uploads up to 20 MiB and
16 megapixels, a 2 s cooldown so the flood is not throttled away). For ``--duration``
seconds, each hostile user sends /stylize with the files of ``tests/hostile_files`` in turn
(a GIF with a million frames, PNGs with a million chunks, an APNG declaring 2³¹ frames, a
WebP with a 16384² canvas, an RLE BMP, 16-megapixel LA, 16-bit and palette PNGs of a few
tens of KB) as fast as it may: a new request as soon as the last one is answered, and at
most one every ``--hostile-pause`` seconds (a script clicking as fast as Discord's client
lets a person send a command). Each ordinary user sends a small photo every
``--ordinary-every`` seconds.

It prints the interactions and their outcomes, the time to acknowledge of ordinary and
hostile interactions, the bot's event-loop lag (from its ``nst_event_loop_lag_seconds``
histogram, over the flood only), the bot process's peak memory against a bound computed
from its limits, and whether each check holds: no ordinary interaction acknowledged later
than 3 s, lag p99 under 100 ms, memory under the bound, exactly one final answer for every
interaction, no temporary file left in the data folder. It exits with status 1 when one
does not.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from benchmarks.load_test import IMAGES, LoadSettings, answered, machine, outcome_of, spread
from tests.bot.harness import BotProcess, add_images, write_config
from tests.fake_discord import FakeDiscord, FakeInteraction
from tests.hostile_files import (
    apng_huge_frame_count,
    bmp_rle8,
    gif_many_frames,
    png_16mp,
    png_many_chunks,
    webp_huge_canvas,
)
from tests.reliability.support import child_pids, rss_bytes, unexpected_tracebacks

ACK_DEADLINE_S = 3.0
LAG_P99_LIMIT_S = 0.1
MAX_BYTES = 20 * 1024 * 1024
DOWNLOADS = 4
DECODES = 2
# The bot process holds at most DOWNLOADS bodies (a download keeps its permit until decoded), and
# while one is read about as much again in buffers. Decodes run in processes of their own: a
# 16-megapixel decode peaks at about 130 MiB (tests/imageio/test_hostile_files.py bounds it at
# 160 MiB), on top of an interpreter with Pillow and numpy loaded (about 60 MiB).
DOWNLOAD_BYTES = 2 * MAX_BYTES
DECODER_BOUND = 160 * 2**20 + 96 * 2**20
MORE_REASONS = (
    ("chunks", "hostile_structure"),
    ("blocks", "hostile_structure"),
    ("megapixels", "too_many_pixels"),
    ("compression are not supported", "rle_bmp"),
    ("storage", "storage"),
)


def hostile_files() -> dict[str, tuple[bytes, str, str]]:
    """(bytes, filename, content type) of each hostile upload, by name."""
    return {
        "gif_million_frames": (gif_many_frames(), "frames.gif", "image/gif"),
        "png_million_chunks": (png_many_chunks(), "chunks.png", "image/png"),
        "png_million_text": (png_many_chunks(kind=b"tEXt"), "text.png", "image/png"),
        "apng_2g_frames": (apng_huge_frame_count(), "anim.png", "image/png"),
        "webp_huge_canvas": (webp_huge_canvas(), "canvas.webp", "image/webp"),
        "bmp_rle8": (bmp_rle8(), "old.bmp", "image/bmp"),
        "png_la_16mp": (png_16mp("LA"), "la.png", "image/png"),
        "png_i16_16mp": (png_16mp("I;16"), "grey16.png", "image/png"),
        "png_p_16mp": (png_16mp("P"), "palette.png", "image/png"),
    }


@dataclass
class Sent:
    interaction: FakeInteraction
    user: int
    hostile: bool


def bot_overrides() -> dict[str, dict[str, object]]:
    return {
        "downloads": {
            "max_bytes": MAX_BYTES,
            "max_pixels": 16_000_000,
            "timeout_s": 20.0,
            "max_concurrent": DOWNLOADS,
            "max_concurrent_decodes": DECODES,
        },
        "limits": {"cooldown_s": 2.0, "max_jobs_per_user": 2, "queue_size": 16, "min_size": 16},
        "quality.fast": {"size": 32, "steps": 2},
        "pool": {"devices": ["cpu"], "workers_per_device": 1, "cpu_threads": 1},
        "logging": {"level": "WARNING"},
    }


async def scrape_lag(port: int) -> Counter[float]:
    """Cumulative counts of the bot's loop-lag histogram, by bucket upper bound (inf for +Inf)."""
    pattern = re.compile(r'^nst_event_loop_lag_seconds_bucket\{le="([^"]+)"\} (\S+)$', re.MULTILINE)
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as response:
        text = await response.text()
    return Counter({float(le): float(count) for le, count in pattern.findall(text)})


def lag_quantile(before: Counter[float], after: Counter[float], fraction: float) -> tuple[float, int]:
    """The upper bound of the bucket holding the ``fraction`` quantile of the samples taken between two scrapes."""
    bounds = sorted(after)
    counts = [after[b] - before[b] for b in bounds]
    total = counts[-1]
    for bound, count in zip(bounds, counts, strict=True):
        if count >= fraction * total:
            return bound, int(total)
    return float("inf"), int(total)


def decoder_pids(bot_pid: int) -> list[int]:
    """The bot's decode processes: the children of its forkserver."""
    servers = [
        pid for pid in child_pids(bot_pid)
        if b"forkserver" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    return [pid for server in servers for pid in child_pids(server)]


def peak_rss_bytes(pid: int) -> int:
    """The process's resident high-water mark (VmHWM), from ``/proc/<pid>/status``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise ValueError(f"no VmHWM for process {pid}")


def classify(kind: str, text: str) -> str:
    if not kind.startswith("refused: other"):
        return kind
    return next((f"refused: {code}" for words, code in MORE_REASONS if words in text), kind)


async def run(duration_s: float, ordinary_every_s: float, hostile_pause_s: float, folder: Path) -> int:
    started = time.monotonic()
    files = hostile_files()
    async with FakeDiscord() as fake:
        config = write_config(folder, fake, bot_overrides())
        bot = await BotProcess.start(config, fake)
        try:
            await bot.wait_ready(fake)
            await fake.wait_for_command("stylize")
            images = add_images(fake, IMAGES)
            uploads = [fake.add_attachment(data, name, kind) for data, name, kind in files.values()]
            warmup = await fake.invoke_command(
                "stylize", {"content": images.content, "preset": "starry_night", "quality": "fast"},
                user=fake.add_user("warmup"),
            )
            await warmup.wait_for(answered, 180)
            baseline = rss_bytes(bot.process.pid)
            bound = baseline + DOWNLOADS * DOWNLOAD_BYTES
            hostile_users = [fake.add_user(f"hostile{i}") for i in range(10)]
            ordinary_users = [fake.add_user(f"ordinary{i}") for i in range(10)]
            sent: list[Sent] = []
            stop = asyncio.Event()
            lag_before = await scrape_lag(bot.http_port)

            async def hostile(index: int) -> None:
                turn = index
                while not stop.is_set():
                    upload = uploads[turn % len(uploads)]
                    turn += 1
                    interaction = await fake.invoke_command(
                        "stylize", {"content": upload, "preset": "starry_night", "quality": "fast"},
                        user=hostile_users[index],
                    )
                    sent.append(Sent(interaction, index, True))
                    paused = asyncio.create_task(asyncio.wait_for(stop.wait(), hostile_pause_s))
                    with contextlib.suppress(TimeoutError, AssertionError):
                        await asyncio.gather(interaction.wait_original(timeout=60), paused)

            async def ordinary(index: int) -> None:
                await asyncio.sleep(index * ordinary_every_s / 10)
                while not stop.is_set():
                    interaction = await fake.invoke_command(
                        "stylize", {"content": images.content, "preset": "starry_night", "quality": "fast"},
                        user=ordinary_users[index],
                    )
                    sent.append(Sent(interaction, 100 + index, False))
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), ordinary_every_s)

            flood_started = time.monotonic()
            senders = [asyncio.create_task(hostile(i)) for i in range(10)]
            senders += [asyncio.create_task(ordinary(i)) for i in range(10)]
            await asyncio.sleep(duration_s)
            stop.set()
            await asyncio.gather(*senders)
            flood_s = time.monotonic() - flood_started
            lag_after = await scrape_lag(bot.http_port)
            with contextlib.suppress(TimeoutError):
                await fake.wait_for(lambda: all(answered(s.interaction) for s in sent), 300, "every answer")
            judged = LoadSettings(ack_deadline_s=ACK_DEADLINE_S)
            outcomes = [outcome_of(fake, s.interaction, s.user, judged) for s in sent]
            hwm = peak_rss_bytes(bot.process.pid)
            decoders = [peak_rss_bytes(pid) for pid in decoder_pids(bot.process.pid)]
            exit_code = await bot.terminate()
        finally:
            await bot.kill()
    leftovers = sorted(str(p.relative_to(folder)) for p in folder.rglob("*.tmp"))
    tracebacks = unexpected_tracebacks(bot.log())

    def kinds_of(hostile: bool) -> str:
        kinds = Counter(
            classify(o.kind, s.interaction.original.content if s.interaction.original else "")
            for o, s in zip(outcomes, sent, strict=True)
            if s.hostile == hostile
        )
        return ", ".join(f"{kind} {count}" for kind, count in kinds.most_common())

    ordinary_acks = [o.ack_s for o, s in zip(outcomes, sent, strict=True) if not s.hostile and o.ack_s is not None]
    hostile_acks = [o.ack_s for o, s in zip(outcomes, sent, strict=True) if s.hostile and o.ack_s is not None]
    late_ordinary = sum(o.late_ack for o, s in zip(outcomes, sent, strict=True) if not s.hostile)
    not_one = sum(o.finals != 1 for o in outcomes)
    p50, samples = lag_quantile(lag_before, lag_after, 0.5)
    p99, _ = lag_quantile(lag_before, lag_after, 0.99)
    worst, _ = lag_quantile(lag_before, lag_after, 1.0)
    checks = {
        f"no ordinary interaction acknowledged later than {ACK_DEADLINE_S:g} s": late_ordinary == 0,
        f"event-loop lag p99 under {LAG_P99_LIMIT_S * 1000:g} ms": p99 <= LAG_P99_LIMIT_S,
        "bot memory under the bound (decode processes included)": hwm < bound
        and all(peak < DECODER_BOUND for peak in decoders),
        "exactly one final answer for every interaction": not_one == 0,
        "no temporary file left behind": not leftovers,
        "the bot stopped cleanly on SIGTERM, no unexpected traceback": exit_code == 0 and not tracebacks,
    }
    hostile_count = sum(s.hostile for s in sent)
    lines = [
        f"hostile load: 10 hostile users ({len(files)} kinds of file in turn, each resent once answered, at most "
        f"every {hostile_pause_s:g} s) "
        f"+ 10 ordinary users (one small photo every {ordinary_every_s:g} s) for {flood_s:.0f} s",
        "bot: 1 CPU worker x 1 thread, jobs 32 px x 2 steps, cooldown 2 s, 2 jobs per user, queue 16, "
        f"{DOWNLOADS} downloads and {DECODES} decodes at once",
        f"machine: {machine()}",
        f"interactions      {len(sent)} ({hostile_count} hostile, {len(sent) - hostile_count} ordinary)",
        f"outcomes, hostile {kinds_of(True)}",
        f"outcomes, ordinary {kinds_of(False)}",
        f"ack, ordinary     {spread(ordinary_acks)}; later than {ACK_DEADLINE_S:g} s: {late_ordinary}",
        f"ack, hostile      {spread(hostile_acks)}",
        f"event-loop lag    p50 <= {p50 * 1000:g} ms, p99 <= {p99 * 1000:g} ms, max <= {worst * 1000:g} ms "
        f"({samples} samples, 0.1 s apart)",
        f"bot memory        bot process peak RSS {hwm / 2**20:.0f} MiB, bound {bound / 2**20:.0f} MiB = after "
        f"warm-up {baseline / 2**20:.0f} MiB + {DOWNLOADS} downloads x {DOWNLOAD_BYTES // 2**20} MiB; "
        f"{len(decoders)} decode processes, peak RSS "
        + (", ".join(f"{peak / 2**20:.0f}" for peak in decoders) or "none")
        + f" MiB, bound {DECODER_BOUND // 2**20} MiB each",
        f"final answers     {'exactly one each' if not not_one else f'{not_one} interactions without exactly one'}",
        f"temporary files   {len(leftovers)} left" + (f": {', '.join(leftovers[:5])}" if leftovers else ""),
        f"wall time         {time.monotonic() - started:.0f} s",
    ]
    for check, holds in checks.items():
        lines.append(f"{'holds' if holds else 'BROKEN'}: {check}")
    print("\n".join(lines))
    return 0 if all(checks.values()) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=40.0, help="seconds of flood")
    parser.add_argument("--ordinary-every", type=float, default=4.0, help="seconds between an ordinary user's requests")
    parser.add_argument("--hostile-pause", type=float, default=0.5, help="least seconds between a hostile user's requests")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="nst-hostile-") as folder:
        return asyncio.run(run(args.duration, args.ordinary_every, args.hostile_pause, Path(folder)))


if __name__ == "__main__":
    sys.exit(main())
