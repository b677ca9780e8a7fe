"""Quality presets: output size, evaluation budget and scales for ``fast``, ``balanced`` and ``high``.

| preset   | long side | evaluations | scales (coarse to fine, evaluations each) |
|----------|-----------|-------------|-------------------------------------------|
| fast     | 384 px    | 200         | 192 -> 384, 100 each                      |
| balanced | 512 px    | 400         | 256 -> 512, 200 each                      |
| high     | 1024 px   | 600         | 256 -> 512 -> 1024, 200 each              |

A request's explicit ``size`` or ``steps`` overrides its preset's; its ``multiscale`` (when
not ``None``) turns coarse to fine on with MULTISCALE_LEVELS scales, or off.
"""

from __future__ import annotations

from dataclasses import dataclass

from nst_engine.errors import InvalidRequest
from nst_engine.request import StyleRequest

MIN_SIZE = 32
MAX_SIZE = 4096
MAX_STEPS = 10_000
LBFGS_HISTORY = 50
"""Curvature pairs L-BFGS keeps; each costs two image-sized buffers."""
BF16_ON_CUDA = False
"""Whether jobs on CUDA run VGG19 in bfloat16 by default (nst_engine.acceleration): only once
benchmarks/gpu_check.sh shows its final loss within 1% of fp32's at equal steps."""
MULTISCALE_LEVELS = 3
"""Scales of a request that asks for coarse to fine explicitly."""
MULTISCALE_AUTO_FROM = 768
"""Long side from which a preset's ladder gets MULTISCALE_LEVELS scales when the request does not say."""
MULTISCALE_COARSEST = 128  # smallest long side of a coarse-to-fine ladder
MULTISCALE_MIN_SHARE = 10  # fewest evaluations worth spending on a scale


@dataclass(frozen=True)
class Preset:
    size: int
    steps: int
    levels: int
    """Scales from coarse to fine, each half the next (1: the output size only)."""


QUALITY_PRESETS: dict[str, Preset] = {
    "fast": Preset(size=384, steps=200, levels=2),
    "balanced": Preset(size=512, steps=400, levels=2),
    "high": Preset(size=1024, steps=600, levels=3),
}


def resolve_size_steps(request: StyleRequest) -> tuple[int, int]:
    """The (long side, evaluation budget) a request runs with."""
    try:
        preset = QUALITY_PRESETS[request.quality]
    except KeyError:
        raise InvalidRequest(
            f"Unknown quality {request.quality!r}; choose one of {', '.join(QUALITY_PRESETS)}."
        ) from None
    size = preset.size if request.size is None else request.size
    steps = preset.steps if request.steps is None else request.steps
    return size, steps


def resolve_levels(request: StyleRequest, size: int) -> int:
    """How many scales a request at long side ``size`` runs (before any is dropped for being too small)."""
    if request.multiscale is not None:
        return MULTISCALE_LEVELS if request.multiscale else 1
    preset = QUALITY_PRESETS[request.quality]
    return MULTISCALE_LEVELS if size >= MULTISCALE_AUTO_FROM else preset.levels


def scale_ladder(size: int, steps: int, levels: int) -> tuple[tuple[int, int], ...]:
    """Long sides from coarse to fine with each one's share of the evaluation budget.

    Up to ``levels`` sizes, each half the next and none below MULTISCALE_COARSEST; every
    scale gets an equal share and the finest the remainder. A budget too small to share
    stays at the output size.
    """
    sides = [size]
    while len(sides) < levels and sides[0] // 2 >= MULTISCALE_COARSEST:
        sides.insert(0, sides[0] // 2)
    while len(sides) > 1 and steps // len(sides) < MULTISCALE_MIN_SHARE:
        sides.pop(0)
    share = steps // len(sides)
    budgets = [share] * (len(sides) - 1) + [steps - share * (len(sides) - 1)]
    return tuple(zip(sides, budgets))


def working_size(size: tuple[int, int], multiple: int) -> tuple[int, int]:
    """``size`` with each side rounded to the nearest multiple of ``multiple`` (at least one multiple)."""
    if multiple <= 1:
        return size
    return (max(multiple, round(size[0] / multiple) * multiple), max(multiple, round(size[1] / multiple) * multiple))
