"""What a style-transfer job asks for, what it reports while running, and what it returns.

These plain dataclasses are the whole contract between the engine, the executor pool and
its callers: they pickle across process boundaries and carry no torch objects.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

Optimizer = Literal["lbfgs", "adam"]
Init = Literal["content", "noise", "style"]
ColorMode = Literal["none", "luminance", "histogram"]
Quality = Literal["fast", "balanced", "high"]
Pooling = Literal["max", "avg"]
ImageSource = bytes | os.PathLike[str]
"""An encoded image (PNG/JPEG/...): its bytes, or a file holding them, read where the job runs."""
Padding = Literal["zeros", "replicate"]
StyleLoss = Literal["w2", "gram"]

DEFAULT_CONTENT_LAYERS: tuple[str, ...] = ("relu4_2",)
DEFAULT_STYLE_LAYERS: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
DEFAULT_TV_WEIGHT = 2e7
"""Total variation, on luma and chroma, against the fine colour speckle L-BFGS leaves (chosen with
benchmarks/bench_quality.py). The loss terms are means over pixels and features, so one weight
suits every image size."""


@dataclass(frozen=True)
class StyleRequest:
    """One style-transfer job.

    Images travel as encoded bytes (PNG/JPEG/...), or as paths to files holding them, so a
    request is small, picklable and decoded, with the pixel cap, where it runs; a path keeps
    a queued request to a few bytes, the file being read only when the job starts. ``size`` and ``steps`` left as ``None``
    take the values of ``quality``'s preset. ``shape_multiple`` above 1 optimises at sides rounded to
    multiples of it and resizes the result back to the content's aspect, so that uploads of
    similar shapes share cuDNN's tuning, CUDA graphs and batches.

    ``style_loss`` is ``"w2"`` (the Wasserstein-2 distance between the features' mean and
    covariance and the style's) or ``"gram"`` (Gatys et al.'s Gram matrices); ``padding`` is
    the first convolution's border mode.
    """

    content: ImageSource
    styles: tuple[ImageSource, ...]
    style_blend: tuple[float, ...] | None = None
    quality: Quality = "balanced"
    size: int | None = None
    steps: int | None = None
    optimizer: Optimizer = "lbfgs"
    init: Init = "content"
    seed: int | None = None
    content_weight: float = 1.0
    style_weight: float = 1.0
    tv_weight: float = DEFAULT_TV_WEIGHT
    content_layers: tuple[str, ...] = DEFAULT_CONTENT_LAYERS
    style_layers: tuple[str, ...] = DEFAULT_STYLE_LAYERS
    style_layer_weights: tuple[float, ...] | None = None
    style_scale: float = 1.0
    preserve_colors: ColorMode = "none"
    pooling: Pooling = "max"
    padding: Padding = "replicate"
    style_loss: StyleLoss = "gram"
    multiscale: bool | None = None
    weights: str = "caffe"
    max_input_pixels: int = 40_000_000
    shape_multiple: int = 1


@dataclass(frozen=True)
class LossTerms:
    """Weighted loss terms at one point of the optimisation."""

    content: float
    style: float
    tv: float
    total: float


@dataclass(frozen=True)
class LossSummary:
    initial: LossTerms
    final: LossTerms


@dataclass(frozen=True)
class Progress:
    """Reported every few evaluations while a job runs."""

    iteration: int
    total: int
    losses: LossTerms
    preview: bytes | None = None


@dataclass(frozen=True)
class StyleResult:
    """A finished job: ``image`` is an RGB uint8 array of shape (height, width, 3)."""

    image: np.ndarray
    losses: LossSummary
    evaluations: int
    seconds: float
    device: str
    seed: int
    weights: str
    width: int = field(init=False)
    height: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "height", int(self.image.shape[0]))
        object.__setattr__(self, "width", int(self.image.shape[1]))


class CancelToken(Protocol):
    """Anything with ``is_set()``: threading.Event, multiprocessing.Event, ..."""

    def is_set(self) -> bool: ...
