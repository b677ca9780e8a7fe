"""Loss maths against hand-computed values, and the whole objective against pastiche's."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from nst_engine import transfer
from nst_engine.losses import content_loss, gram, luma_chroma, style_loss, tv_loss
from nst_engine.request import StyleRequest
from nst_engine.transfer import Objective, plan_request
from nst_engine.vgg import layer_channels

from .conftest import png_bytes

# Two channels, one row of two pixels: channel 0 = (1, 2), channel 1 = (3, 4).
FEATURES = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])


def test_gram_is_feature_inner_products_over_pixel_count():
    expected = torch.tensor([[[5.0, 11.0], [11.0, 25.0]]]) / 2
    assert torch.equal(gram(FEATURES), expected)


def test_gram_same_for_channels_last_layout():
    features = torch.rand(1, 8, 5, 7)
    channels_last = features.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(gram(channels_last), gram(features))


def test_content_loss_is_weighted_mean_squared_error():
    loss = content_loss({"a": FEATURES}, {"a": torch.zeros_like(FEATURES)}, {"a": 0.5})
    assert loss.item() == pytest.approx(0.5 * (1 + 4 + 9 + 16) / 4)


def test_style_loss_is_weighted_mean_squared_gram_error():
    loss = style_loss({"a": FEATURES}, {"a": torch.zeros(1, 2, 2)}, {"a": 2.0})
    assert loss.item() == pytest.approx(2.0 * (2.5**2 + 5.5**2 + 5.5**2 + 12.5**2) / 4)


def test_losses_sum_over_layers():
    targets = {"a": torch.zeros_like(FEATURES), "b": FEATURES + 1}
    loss = content_loss({"a": FEATURES, "b": FEATURES}, targets, {"a": 1.0, "b": 3.0})
    assert loss.item() == pytest.approx(7.5 + 3.0 * 1.0)


def test_tv_loss_is_mean_absolute_neighbour_difference():
    image = torch.tensor([[[[0.0, 1.0], [3.0, 5.0]]]])
    # horizontal: |1-0|, |5-3| -> mean 1.5; vertical: |3-0|, |5-1| -> mean 3.5
    assert tv_loss(image).item() == pytest.approx(5.0)


def test_tv_on_luma_and_chroma_weighs_each_as_asked():
    grey = torch.zeros(1, 3, 2, 2)
    grey[..., 1] = 0.5  # a grey step: luma 0.5, no chroma
    red = torch.zeros(1, 3, 2, 2)
    red[:, 0, :, 1] = 0.5  # a red step: luma 0.1495, Cb -0.0844, Cr 0.25
    luma_only, chroma_only = luma_chroma(1.0, 0.0), luma_chroma(0.0, 1.0)
    # Means over the three mapped channels; the two rows are alike, so nothing changes vertically.
    assert tv_loss(grey, luma_only).item() == pytest.approx(0.5 / 3)
    assert tv_loss(grey, chroma_only).item() == pytest.approx(0.0, abs=1e-6)
    assert tv_loss(red, luma_only).item() == pytest.approx(0.299 * 0.5 / 3)
    assert tv_loss(red, chroma_only).item() == pytest.approx((0.168736 + 0.5) * 0.5 / 3)
    # The engine's weights make colour speckle dear against grey edges, far more than RGB does.
    engine = luma_chroma(transfer.TV_LUMA, transfer.TV_CHROMA)
    speckle = torch.tensor([[[[0.5, 0.0]], [[0.0, 0.5]], [[0.25, 0.25]]]]).repeat(1, 1, 2, 1)  # red next to green
    edge = torch.tensor([[[[0.5, 0.0]], [[0.5, 0.0]], [[0.5, 0.0]]]]).repeat(1, 1, 2, 1)  # grey next to black
    on_rgb = tv_loss(speckle) / tv_loss(edge)
    assert tv_loss(speckle, engine) / tv_loss(edge, engine) > 3 * on_rgb


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_objective_equals_pastiche_loss(tmp_path, content_png, style_png, caffe_vgg):
    """Configured like pastiche (content layer weight 0.01, style 10/C^2), both score an image alike."""
    from pastiche.pastiche import VGG_MEAN, PasticheArtist

    from nst_engine.imageio import decode_image
    from nst_engine.transfer import _Images

    # Both images at the sizes both sides work at (48x36, and the style at as many pixels), so that
    # neither resamples them: pastiche's filter is bilinear, ours bicubic.
    content_png = png_bytes(np.asarray(Image.open(io.BytesIO(content_png)).resize((48, 36))))
    style_png = png_bytes(np.asarray(Image.open(io.BytesIO(style_png)).resize((42, 42))))
    (tmp_path / "content.png").write_bytes(content_png)
    (tmp_path / "style.png").write_bytes(style_png)
    artist = PasticheArtist(str(tmp_path / "content.png"), [str(tmp_path / "style.png")], device="cpu", size=48)

    layers = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    request = StyleRequest(
        content=content_png,
        styles=(style_png,),
        size=48,
        tv_weight=0.0,
        content_weight=0.01,
        style_layer_weights=tuple(10.0 / layer_channels(name) ** 2 for name in layers),
    )
    images = _Images(decode_image(content_png, max_pixels=10**6), [decode_image(style_png, max_pixels=10**6)])
    content, styles = images.at(request, 48, torch.device("cpu"))
    assert [list(content.shape[-2:]), list(styles[0].shape[-2:])] == [artist.content_size, artist.style_sizes[0]]
    objective = Objective(caffe_vgg, request, plan_request(request), content, styles)

    image = (content + 0.1 * torch.rand(content.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    caffe_image = image.flip(1) * 255 - torch.tensor(VGG_MEAN).view(1, 3, 1, 1)
    artist.pastiche = caffe_image
    with torch.no_grad():
        theirs = artist._calc_loss().item()
        ours = objective(image)[3].item()
    assert ours == pytest.approx(theirs, rel=1e-4)


def test_gram_gradient_matches_autograd_of_the_plain_formula():
    features = torch.rand(2, 6, 4, 5, dtype=torch.float64, requires_grad=True)
    weights = torch.rand(2, 6, 6, dtype=torch.float64)
    (gram(features) * weights).sum().backward()
    ours = features.grad.clone()
    features.grad = None
    flat = features.reshape(2, 6, 20)
    ((flat @ flat.mT / 20) * weights).sum().backward()
    torch.testing.assert_close(ours, features.grad)
    assert torch.autograd.gradcheck(gram, (torch.rand(1, 3, 2, 2, dtype=torch.float64, requires_grad=True),))


def test_gram_gradient_keeps_the_channels_last_layout():
    # What reaches a channels_last activation (a convolution's output), not a leaf, whose
    # .grad torch would re-layout anyway.
    leaf = torch.rand(2, 6, 4, 5, dtype=torch.float64, requires_grad=True)
    features = leaf.contiguous(memory_format=torch.channels_last)
    seen = []
    features.register_hook(seen.append)
    weights = torch.rand(2, 6, 6, dtype=torch.float64)
    (gram(features) * weights).sum().backward()
    assert seen[0].is_contiguous(memory_format=torch.channels_last)
    plain = leaf.detach().clone().requires_grad_(True)
    flat = plain.reshape(2, 6, 20)
    ((flat @ flat.mT / 20) * weights).sum().backward()
    torch.testing.assert_close(seen[0], plain.grad)
