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
