"""The peak-memory estimate used for admission control."""

from __future__ import annotations

import dataclasses

import pytest

from nst_engine.memory import estimate_peak_bytes, max_fitting_size
from nst_engine.request import StyleRequest

from .conftest import brush_strokes, landscape, png_bytes

GiB = 2**30


@pytest.fixture(scope="module")
def request_512() -> StyleRequest:
    return StyleRequest(content=png_bytes(landscape(400, 300)), styles=(png_bytes(brush_strokes()),), size=512)


def test_estimate_grows_with_size_roughly_with_pixels(request_512):
    sizes = [256, 512, 1024, 2048]
    estimates = [estimate_peak_bytes(dataclasses.replace(request_512, size=s), "cuda") for s in sizes]
    assert estimates == sorted(estimates)
    growth = (estimates[3] - estimates[2]) / (estimates[2] - estimates[1])
    assert 3.5 < growth < 4.5  # four times the pixels, four times the working memory


def test_estimate_uses_the_content_aspect(request_512):
    square = dataclasses.replace(request_512, content=png_bytes(landscape(300, 300)))
    assert estimate_peak_bytes(square) > estimate_peak_bytes(request_512)


def test_estimate_follows_settings(request_512):
    base = estimate_peak_bytes(request_512)
    assert estimate_peak_bytes(dataclasses.replace(request_512, pooling="avg")) < base
    assert estimate_peak_bytes(dataclasses.replace(request_512, optimizer="adam")) < base
    shallow = dataclasses.replace(request_512, content_layers=("relu2_2",), style_layers=("relu1_1", "relu2_1"))
    assert estimate_peak_bytes(shallow) < base
    assert estimate_peak_bytes(dataclasses.replace(request_512, style_scale=4.0)) > base
    assert estimate_peak_bytes(dataclasses.replace(request_512, size=None, quality="high")) > base
    assert estimate_peak_bytes(request_512, "cpu") < base  # no CUDA context


def test_realistic_magnitudes(request_512):
    assert 0.5 * GiB < estimate_peak_bytes(request_512) < 4 * GiB
    assert 4 * GiB < estimate_peak_bytes(dataclasses.replace(request_512, size=2048)) < 40 * GiB


def test_unreadable_content_is_estimated_as_square(request_512):
    broken = dataclasses.replace(request_512, content=b"not an image")
    square = dataclasses.replace(request_512, content=png_bytes(landscape(300, 300)))
    assert estimate_peak_bytes(broken) == estimate_peak_bytes(square)


@pytest.mark.parametrize("capacity", [2 * GiB, 8 * GiB, 80 * GiB])
def test_max_fitting_size_is_the_largest_that_fits(request_512, capacity):
    size = max_fitting_size(request_512, capacity)
    assert size > 0
    assert estimate_peak_bytes(dataclasses.replace(request_512, size=size)) <= capacity
    if size < 4096:
        assert estimate_peak_bytes(dataclasses.replace(request_512, size=size + 1)) > capacity


def test_max_fitting_size_zero_when_nothing_fits(request_512):
    assert max_fitting_size(request_512, 100 * 2**20) == 0
