"""Remixing a result: the "Adjust…" dialog's values and the "Higher quality" step, checked like /stylize's options."""

from __future__ import annotations

from bot.config import QUALITIES, Config
from bot.jobs import SEED_MAX, STYLE_STRENGTH_RANGE, JobParams, new_seed
from bot.validation import Rejection


def adjusted(params: JobParams, strength: str, seed: str, size: str, config: Config) -> JobParams:
    """``params`` with the dialog's values; an empty seed means a new random one. Raises Rejection naming the field."""
    low, high = STYLE_STRENGTH_RANGE
    try:
        style_strength = float(strength.strip().lstrip("×x").replace(",", "."))
    except ValueError:
        raise Rejection(f"Style strength must be a number from {low:g} to {high:g}, not `{strength}`.") from None
    if not low <= style_strength <= high:
        raise Rejection(f"Style strength must be from {low:g} to {high:g}; `{strength}` is not.")
    if seed.strip():
        try:
            chosen_seed = int(seed.strip())
        except ValueError:
            raise Rejection(f"The seed must be a whole number from 0 to {SEED_MAX}, not `{seed}`.") from None
        if not 0 <= chosen_seed <= SEED_MAX:
            raise Rejection(f"The seed must be from 0 to {SEED_MAX}; `{seed}` is not.")
    else:
        chosen_seed = new_seed()
    limits = config.limits
    try:
        long_side = int(size.strip().removesuffix("px").strip())
    except ValueError:
        raise Rejection(
            f"The size must be a whole number of pixels from {limits.min_size} to {limits.max_size}, not `{size}`."
        ) from None
    if not limits.min_size <= long_side <= limits.max_size:
        raise Rejection(f"The size must be from {limits.min_size} to {limits.max_size} pixels; `{size}` is not.")
    return params.with_changes(style_strength=style_strength, seed=chosen_seed, size=long_side)


def higher_quality(params: JobParams, config: Config, ceiling: str | None) -> JobParams:
    """The next quality level's steps, and its size when larger; refused at the top or the server's ``ceiling``."""
    top = ceiling or QUALITIES[-1]
    if QUALITIES.index(params.quality) >= QUALITIES.index(top):
        where = "this server allows" if ceiling else "there is"
        raise Rejection(f"This image is already at the highest quality {where} (**{params.quality}**).")
    quality = QUALITIES[QUALITIES.index(params.quality) + 1]
    preset = config.quality.preset(quality)
    return params.with_changes(quality=quality, steps=preset.steps, size=max(params.size, preset.size))
