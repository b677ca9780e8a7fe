"""Warming a GPU worker up for the shapes most jobs have, before it takes any.

cuDNN picks its convolution kernels per input shape by timing them the first time it sees
the shape (about a second at 512 px), so the first job of every new shape is slow. With
sides rounded to a multiple (``StyleRequest.shape_multiple``), a few shapes cover most
uploads: the common photo aspects, landscape and portrait, at every scale of the qualities that
run at most two scales (fast and balanced; high's three scales at 1024 px would take long).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from nst_engine.presets import QUALITY_PRESETS
from nst_engine.request import StyleRequest
from nst_engine.transfer import fit_long_side, plan_request, stylize, working_size

COMMON_ASPECTS = ((1, 1), (4, 3), (3, 2), (16, 9))
WARM_UP_STEPS = 4  # the first step, the CUDA graph's warm-up and its capture


def common_shapes(sizes: tuple[int, ...], multiple: int) -> list[tuple[int, int]]:
    """The distinct working shapes (width, height) of the common aspects at ``sizes``, both orientations."""
    shapes: list[tuple[int, int]] = []
    for size in sizes:
        for long, short in COMMON_ASPECTS:
            for width, height in ((long, short), (short, long)):
                shape = working_size(fit_long_side(width * 100, height * 100, size), multiple)
                if shape not in shapes:
                    shapes.append(shape)
    return shapes


MAX_WARM_SCALES = 2


def preset_scale_sizes() -> tuple[int, ...]:
    """Long sides of every scale of the quality presets that run at most MAX_WARM_SCALES scales."""
    sizes: list[int] = []
    for name in QUALITY_PRESETS:
        request = StyleRequest(content=b"", styles=(b"",), quality=name)  # type: ignore[arg-type]
        scales = plan_request(request).scales
        if len(scales) <= MAX_WARM_SCALES:
            sizes.extend(side for side, _ in scales)
    return tuple(sorted(set(sizes)))


def _png(width: int, height: int) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def warm_up(device: str, sizes: tuple[int, ...], multiple: int, weights: str = "caffe") -> list[tuple[int, int]]:
    """Run a few steps at each common shape on ``device``; returns the shapes warmed."""
    shapes = common_shapes(sizes, multiple)
    style = _png(256, 256)
    for width, height in shapes:
        request = StyleRequest(
            content=_png(width, height),
            styles=(style,),
            size=max(width, height),
            steps=WARM_UP_STEPS,
            seed=0,
            multiscale=False,
            weights=weights,
            shape_multiple=multiple,
        )
        stylize(request, device=device)
    return shapes
