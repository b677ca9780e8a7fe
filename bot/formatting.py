"""Small text helpers shared by messages and errors: sizes, durations, bars, loss tables."""

from __future__ import annotations

import math

from nst_engine.request import LossSummary, LossTerms

_BAR_FULL = "█"
_BAR_EMPTY = "░"


def format_bytes(count: int) -> str:
    """``12_345_678`` -> ``"11.8 MiB"``."""
    if count < 1024:
        return f"{count} bytes"
    if count < 1024**2:
        return f"{count / 1024:.1f} KiB"
    return f"{count / 1024**2:.1f} MiB"


def format_duration(seconds: float) -> str:
    """A rounded, human duration: ``"4 s"``, ``"2 min 5 s"``, ``"1 h 3 min"``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def progress_bar(done: int, total: int, width: int = 20) -> str:
    """``progress_bar(5, 10, 10)`` -> ``"█████░░░░░ 50%"``."""
    fraction = 0.0 if total <= 0 else min(1.0, max(0.0, done / total))
    filled = math.floor(fraction * width)
    return f"{_BAR_FULL * filled}{_BAR_EMPTY * (width - filled)} {fraction:.0%}"


def format_loss(value: float) -> str:
    """Losses span many orders of magnitude: four significant digits, exponent when needed."""
    if value == 0:
        return "0"
    if 1e-2 <= abs(value) < 1e5:
        decimals = max(0, 3 - math.floor(math.log10(abs(value))))
        return f"{value:.{decimals}f}"
    return f"{value:.3e}"


def loss_line(losses: LossTerms) -> str:
    """One line of current losses, for progress messages."""
    return (
        f"content {format_loss(losses.content)} · style {format_loss(losses.style)} · "
        f"tv {format_loss(losses.tv)} · total {format_loss(losses.total)}"
    )


def loss_table(summary: LossSummary) -> str:
    """A fixed-width table of each loss term, initial -> final (for a code block)."""
    rows = [("", "initial", "final")]
    for name in ("content", "style", "tv", "total"):
        rows.append((name, format_loss(getattr(summary.initial, name)), format_loss(getattr(summary.final, name))))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = []
    for index, (name, initial, final) in enumerate(rows):
        arrow = "   " if index == 0 else " → "
        lines.append(f"{name:<{widths[0]}}  {initial:>{widths[1]}}{arrow}{final:>{widths[2]}}")
    return "\n".join(lines)
