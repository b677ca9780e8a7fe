"""Load through the fake Discord: bursts of /stylize from many users against the real bot process.

    python -m benchmarks.load_test                                     # 200 interactions, 40 users, bursts of 40
    python -m benchmarks.load_test --interactions 40 --users 10 --burst 10

Run it from the repository root: it drives ``python -m bot`` through the fake Discord of
``tests/fake_discord`` (with the bot harness of ``tests/bot``), with tiny images and few
steps so the figures are about the bot, its queue and its limits rather than the engine.
Users are uneven on purpose, as on a real server: every user sends at least once, and a few
send far more than their share, so cooldowns and per-user limits come into play alongside
the global queue cap; every ``--bad-every``-th upload is a broken file.

It prints the interactions, the outcomes by kind (an image, or a refusal and its reason),
how many got no final answer (lost, must be 0), p50/p95 time to acknowledge and to the
result, the caps as observed, and the bot's memory before and after. It exits with status 1
when an invariant is broken: a lost interaction, two final answers for one, a late
acknowledgement, or a cap exceeded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import platform
import random
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from tests.badinputs import bad_input
from tests.bot.harness import FINAL_TITLES, BotProcess, add_images, finals_for, title, write_config
from tests.fake_discord import FakeDiscord, FakeInteraction, FakeMessage
from tests.reliability.support import rss_bytes, unexpected_tracebacks

IMAGES = Path(__file__).resolve().parent.parent.parent / "shared" / "images"
ACK_DEADLINE_S = 3.0
UNKNOWN_INTERACTION = 10062
DEFERRED = 5  # the interaction callback type of a deferred answer
LOADING = 1 << 7
# How a refusal's text maps to its reason; checked in order.
REFUSAL_REASONS = (
    ("The queue is full", "queue_full"),
    ("You already have", "user_limit"),
    ("Slow down", "cooldown"),
    ("truncated or corrupt", "bad_image"),
)
# A broken upload is refused as such, or earlier, by a limit checked before any download.
BROKEN_UPLOAD_KINDS = frozenset({"refused: bad_image", "refused: cooldown", "refused: user_limit", "refused: queue_full"})


@dataclass(frozen=True)
class LoadSettings:
    """The load and the bot's limits for one run."""

    interactions: int = 200
    users: int = 40
    burst: int = 40
    pause_s: float = 1.0
    queue_size: int = 16
    jobs_per_user: int = 2
    cooldown_s: float = 0.5
    size: int = 32
    steps: int = 2
    bad_every: int = 20
    seed: int = 1
    timeout_s: float = 600.0
    ack_deadline_s: float | None = ACK_DEADLINE_S
    """Discord's acknowledgement deadline, enforced by the fake; None (for tests on a shared machine) enforces
    only that every interaction is deferred before anything else."""


@dataclass
class Outcome:
    """What became of one interaction, as Discord (the fake) saw it."""

    user: int
    kind: str
    finals: int
    ack_s: float | None
    late_ack: bool
    answer_s: float | None = None
    window: tuple[float, float] | None = None
    """(status posted, final answer shown): while the requester saw the job as accepted and unanswered."""
    broken: bool = False
    """The upload was a broken file on purpose."""


@dataclass
class LoadReport:
    """One run: every interaction's outcome, the queue's peak, the bot's memory and how it exited."""

    settings: LoadSettings
    outcomes: list[Outcome]
    rss_before: int
    rss_after: int
    queue_peak: int
    wall_s: float
    exit_code: int | None
    tracebacks: list[str] = field(default_factory=list)

    @property
    def kinds(self) -> Counter[str]:
        return Counter(outcome.kind for outcome in self.outcomes)

    @property
    def lost(self) -> int:
        return self.kinds["lost"]

    @property
    def duplicated(self) -> int:
        """Interactions that got more than one final answer."""
        return sum(outcome.finals > 1 for outcome in self.outcomes)

    @property
    def late_acks(self) -> int:
        return sum(outcome.late_ack for outcome in self.outcomes)

    @property
    def user_peak(self) -> int:
        """Most jobs one user saw accepted and not yet answered at the same moment."""
        by_user: dict[int, list[tuple[float, float]]] = {}
        for outcome in self.outcomes:
            if outcome.window is not None:
                by_user.setdefault(outcome.user, []).append(outcome.window)
        return max((peak_overlap(windows) for windows in by_user.values()), default=0)

    def failures(self) -> list[str]:
        """Every broken invariant, in words; empty when the run was sound."""
        settings = self.settings
        problems = []
        if self.lost:
            problems.append(f"{self.lost} interactions got no final answer")
        if self.duplicated:
            problems.append(f"{self.duplicated} interactions got more than one final answer")
        if self.late_acks:
            deadline = settings.ack_deadline_s
            within = f"within {deadline:g} s" if deadline is not None else "first"
            problems.append(f"{self.late_acks} interactions were not deferred {within}")
        if self.user_peak > settings.jobs_per_user:
            problems.append(f"a user had {self.user_peak} jobs at once (limit {settings.jobs_per_user})")
        if self.queue_peak > settings.queue_size:
            problems.append(f"the queue held {self.queue_peak} jobs (cap {settings.queue_size})")
        if self.exit_code != 0:
            problems.append(f"the bot exited with {self.exit_code} on SIGTERM")
        if self.tracebacks:
            problems.append(f"the bot logged {len(self.tracebacks)} unexpected tracebacks")
        misjudged = sum(o.broken and o.kind not in BROKEN_UPLOAD_KINDS for o in self.outcomes)
        if misjudged:
            problems.append(f"{misjudged} broken uploads were not refused as broken (nor refused before being looked at)")
        if any(not o.broken and o.kind == "refused: bad_image" for o in self.outcomes):
            problems.append("a good upload was refused as a broken image")
        return problems

    def render(self) -> str:
        settings = self.settings
        acks = [o.ack_s for o in self.outcomes if o.ack_s is not None]
        results = [o.answer_s for o in self.outcomes if o.kind == "image" and o.answer_s is not None]
        refusals = [o.answer_s for o in self.outcomes if o.kind.startswith("refused") and o.answer_s is not None]
        kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(self.kinds.items(), key=lambda kv: -kv[1]))
        lines = [
            (
                f"load: {settings.interactions} /stylize interactions from {settings.users} users, bursts of "
                f"{settings.burst} every {settings.pause_s:g} s"
            ),
            (
                f"bot: 1 CPU worker x 1 thread, queue {settings.queue_size}, {settings.jobs_per_user} jobs per "
                f"user, cooldown {settings.cooldown_s:g} s; jobs {settings.size} px x {settings.steps} steps"
            ),
            f"machine: {machine()}",
            f"interactions      {len(self.outcomes)}",
            f"outcomes          {kinds}",
            f"lost              {self.lost}",
            f"final answers     {'exactly one each' if not self.duplicated else f'{self.duplicated} duplicated'}",
            f"time to ack       {spread(acks)}; later than {ACK_DEADLINE_S:g} s: {sum(a > ACK_DEADLINE_S for a in acks)}",
            f"time to result    {spread(results)} ({len(results)} images)",
            f"time to refusal   {spread(refusals)} ({len(refusals)} refusals)",
            (
                f"caps              jobs per user at once {self.user_peak} (limit {settings.jobs_per_user}), "
                f"longest queue {self.queue_peak} (cap {settings.queue_size}, sampled from /metrics)"
            ),
            (
                f"bot RSS           before {self.rss_before / 2**20:.1f} MiB (after one warm-up job), "
                f"after {self.rss_after / 2**20:.1f} MiB"
            ),
            f"wall time         {self.wall_s:.1f} s",
        ]
        failures = self.failures()
        lines.append("invariants        " + ("all hold" if not failures else "BROKEN: " + "; ".join(failures)))
        return "\n".join(lines)


def peak_overlap(windows: Iterable[tuple[float, float]]) -> int:
    """Most closed intervals covering one moment."""
    events = sorted(event for start, end in windows for event in ((start, -1), (end, 1)))
    # At equal times starts (-1) sort first, so touching intervals count as overlapping.
    peak = current = 0
    for _, step in events:
        current -= step
        peak = max(peak, current)
    return peak


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def spread(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"p50 {percentile(values, 0.5):.3f} s, p95 {percentile(values, 0.95):.3f} s, max {max(values):.3f} s"


def machine() -> str:
    model = ""
    with contextlib.suppress(OSError):
        model = next(
            (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
             if line.startswith("model name")),
            "",
        )
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs ({model or 'unknown model'}), load {load}"


def plan(settings: LoadSettings) -> list[int]:
    """Which user sends each interaction: everyone once, then a few heavy users far more than the rest."""
    rng = random.Random(settings.seed)
    weights = [1 / (rank + 1) for rank in range(settings.users)]
    first = list(range(settings.users))
    rng.shuffle(first)
    rest = rng.choices(range(settings.users), weights=weights, k=max(0, settings.interactions - settings.users))
    return (first + rest)[: settings.interactions]


def bot_overrides(settings: LoadSettings) -> dict[str, dict[str, object]]:
    return {
        "limits": {
            "queue_size": settings.queue_size,
            "max_jobs_per_user": settings.jobs_per_user,
            "cooldown_s": settings.cooldown_s,
            "min_size": 32,
        },
        "quality.fast": {"size": settings.size, "steps": settings.steps},
        "pool": {"devices": ["cpu"], "workers_per_device": 1, "cpu_threads": 1},
        "logging": {"level": "WARNING"},
    }


def answered(interaction: FakeInteraction) -> bool:
    """Whether the interaction has its final answer: a refusal, or a job message that reached its end."""
    original = interaction.original
    if original is None or original.loading:
        return False
    if original.content.startswith("⚠️"):
        return True
    return bool(interaction.followups) and title(interaction.followups[0]) in FINAL_TITLES


def is_broken(index: int, settings: LoadSettings) -> bool:
    """Whether the ``index``-th interaction (from 0) uploads the broken file."""
    return (index + 1) % settings.bad_every == 0


def outcome_of(fake: FakeDiscord, interaction: FakeInteraction, user: int, settings: LoadSettings) -> Outcome:
    """Classify an interaction's answer so far; kind "lost" while it has none."""
    rejected = any(r.code == UNKNOWN_INTERACTION for r in interaction.rejections)
    ack = interaction.ack_latency
    deadline = settings.ack_deadline_s
    late = rejected or ack is None or interaction.ack_type != DEFERRED or (deadline is not None and ack > deadline)
    outcome = Outcome(user=user, kind="lost", finals=0, ack_s=ack, late_ack=late)
    original = interaction.original
    if original is None or original.loading:
        return outcome
    answered = next((v.at for v in original.history if not v.flags & LOADING), None)
    if original.content.startswith("⚠️"):
        reason = next((code for words, code in REFUSAL_REASONS if words in original.content), "other")
        outcome.kind = f"refused: {reason}"
        outcome.answer_s = answered - interaction.dispatched_at if answered is not None else None
        outcome.finals = 1 + len(interaction.followups)
        return outcome
    if "is queued" not in original.content or not interaction.followups:
        return outcome
    status = interaction.followups[0]
    finals = finals_for(fake, job_prefix_of(status)) if status.embeds else []
    outcome.finals = len(finals) + len(interaction.followups) - 1
    if title(status) not in FINAL_TITLES:
        return outcome
    done_at = next(v.at for v in status.history if v.embeds and v.embeds[0].get("title") in FINAL_TITLES)
    outcome.window = (status.history[0].at, done_at)
    outcome.kind = {"✅ Done": "image", "❌ Failed": "failed", "🛑 Cancelled": "cancelled"}[title(status)]
    if outcome.kind == "image" and not status.attachments:
        outcome.kind = "done without an image"
    outcome.answer_s = done_at - interaction.dispatched_at
    return outcome


def job_prefix_of(status: FakeMessage) -> str:
    return status.history[0].embeds[0]["footer"]["text"].split()[1]


async def sample_queue(port: int, peak: list[int], stop: asyncio.Event) -> None:
    """Keep ``peak[0]`` at the longest queue ``/metrics`` reported."""
    pattern = re.compile(r"^nst_queue_length (\S+)$", re.MULTILINE)
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                    match = pattern.search(await response.text())
                    if match:
                        peak[0] = max(peak[0], int(float(match.group(1))))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)


async def run_load(settings: LoadSettings, folder: Path, images_dir: Path = IMAGES) -> LoadReport:
    """Start the bot, send the load in bursts, wait (bounded) for every answer, stop the bot; the report."""
    started = time.monotonic()
    async with FakeDiscord(ack_deadline=settings.ack_deadline_s) as fake:
        config = write_config(folder, fake, bot_overrides(settings))
        bot = await BotProcess.start(config, fake)
        try:
            await bot.wait_ready(fake)
            await fake.wait_for_command("stylize")
            images = add_images(fake, images_dir)
            broken = bad_input("png_truncated_half")
            bad = fake.add_attachment(broken.data, broken.filename, broken.content_type)
            users = [fake.add_user(f"load{i}") for i in range(settings.users)]

            warmup = await fake.invoke_command(
                "stylize", {"content": images.content, "preset": "starry_night", "quality": "fast"},
                user=fake.add_user("warmup"),
            )
            await warmup.wait_for(answered, 120)
            rss_before = rss_bytes(bot.process.pid)

            peak = [0]
            stop = asyncio.Event()
            sampler = asyncio.create_task(sample_queue(bot.http_port, peak, stop))
            senders = plan(settings)
            sent: list[tuple[FakeInteraction, int]] = []
            for first in range(0, len(senders), settings.burst):
                if first:
                    await asyncio.sleep(settings.pause_s)
                burst = senders[first : first + settings.burst]
                handles = await asyncio.gather(*(
                    fake.invoke_command(
                        "stylize",
                        {
                            "content": bad if is_broken(first + offset, settings) else images.content,
                            "preset": "starry_night",
                            "quality": "fast",
                        },
                        user=users[user],
                    )
                    for offset, user in enumerate(burst)
                ))
                sent.extend(zip(handles, burst, strict=True))

            remaining = max(1.0, settings.timeout_s - (time.monotonic() - started))
            with contextlib.suppress(TimeoutError):
                await fake.wait_for(lambda: all(answered(h) for h, _ in sent), remaining, "every answer")
            stop.set()
            await sampler
            outcomes = [outcome_of(fake, handle, user, settings) for handle, user in sent]
            for index, outcome in enumerate(outcomes):
                outcome.broken = is_broken(index, settings)
            rss_after = rss_bytes(bot.process.pid)
            exit_code = await bot.terminate()
        finally:
            await bot.kill()
        return LoadReport(
            settings=settings,
            outcomes=outcomes,
            rss_before=rss_before,
            rss_after=rss_after,
            queue_peak=peak[0],
            wall_s=time.monotonic() - started,
            exit_code=exit_code,
            tracebacks=unexpected_tracebacks(bot.log()),
        )


def parse_args(argv: list[str] | None = None) -> LoadSettings:
    defaults = LoadSettings()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--interactions", type=int, default=defaults.interactions)
    parser.add_argument("--users", type=int, default=defaults.users)
    parser.add_argument("--burst", type=int, default=defaults.burst, help="interactions sent at once")
    parser.add_argument("--pause", type=float, default=defaults.pause_s, help="seconds between bursts")
    parser.add_argument("--queue-size", type=int, default=defaults.queue_size)
    parser.add_argument("--jobs-per-user", type=int, default=defaults.jobs_per_user)
    parser.add_argument("--cooldown", type=float, default=defaults.cooldown_s)
    parser.add_argument("--size", type=int, default=defaults.size, help="output long side in pixels")
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--bad-every", type=int, default=defaults.bad_every, help="every Nth upload is broken")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--timeout", type=float, default=defaults.timeout_s, help="give up waiting after this long")
    args = parser.parse_args(argv)
    return LoadSettings(
        interactions=args.interactions,
        users=args.users,
        burst=args.burst,
        pause_s=args.pause,
        queue_size=args.queue_size,
        jobs_per_user=args.jobs_per_user,
        cooldown_s=args.cooldown,
        size=args.size,
        steps=args.steps,
        bad_every=args.bad_every,
        seed=args.seed,
        timeout_s=args.timeout,
    )


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="nst-load-") as folder:
        report = asyncio.run(run_load(settings, Path(folder)))
    print(report.render())
    return 1 if report.failures() else 0


if __name__ == "__main__":
    sys.exit(main())
