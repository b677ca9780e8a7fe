"""Quality presets: output size and evaluation budget for ``fast``, ``balanced`` and ``high``.

| preset   | long side | evaluations | scales (coarse to fine, evaluations each) |
|----------|-----------|-------------|-------------------------------------------|
| fast     | 384 px    | 200         | 384                                       |
| balanced | 512 px    | 400         | 512                                       |
| high     | 1024 px   | 600         | 256 -> 512 -> 1024, 200 each              |

A request's explicit ``size`` or ``steps`` overrides its preset's.
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


@dataclass(frozen=True)
class Preset:
    size: int
    steps: int


QUALITY_PRESETS: dict[str, Preset] = {
    "fast": Preset(size=384, steps=200),
    "balanced": Preset(size=512, steps=400),
    "high": Preset(size=1024, steps=600),
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
