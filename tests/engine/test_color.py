"""Colour preservation helpers."""

from __future__ import annotations

import torch

from nst_engine.color import combine_luminance, luminance, match_color, match_luminance, rgb_to_yiq, yiq_to_rgb


def _image(seed: int, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return low + (high - low) * torch.rand(1, 3, 24, 32, generator=generator)


def _stats(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    pixels = image.reshape(3, -1).double()
    return pixels.mean(dim=1), torch.cov(pixels, correction=0)


def test_yiq_round_trip():
    image = _image(0)
    torch.testing.assert_close(yiq_to_rgb(rgb_to_yiq(image)), image, atol=1e-5, rtol=0)


def test_luminance_is_grey_with_the_image_luma():
    image = _image(1)
    grey = luminance(image)
    assert torch.equal(grey[:, 0], grey[:, 1]) and torch.equal(grey[:, 1], grey[:, 2])
    torch.testing.assert_close(grey[:, 0], 0.299 * image[:, 0] + 0.587 * image[:, 1] + 0.114 * image[:, 2])


def test_combine_luminance_takes_chroma_from_content():
    content = _image(2, 0.3, 0.7)  # mid-tones: the result stays in gamut, so nothing is clipped
    stylised = _image(3, 0.4, 0.6)
    result = combine_luminance(stylised, content)
    torch.testing.assert_close(rgb_to_yiq(result)[:, 1:], rgb_to_yiq(content)[:, 1:], atol=1e-5, rtol=0)
    torch.testing.assert_close(rgb_to_yiq(result)[:, :1], rgb_to_yiq(stylised)[:, :1], atol=1e-5, rtol=0)


def test_match_luminance_copies_mean_and_spread():
    style, content = _image(4, 0.0, 0.5), _image(5, 0.3, 0.9)
    matched_y = rgb_to_yiq(match_luminance(style, content))[:, 0]
    content_y = rgb_to_yiq(content)[:, 0]
    torch.testing.assert_close(matched_y.mean(), content_y.mean(), atol=1e-3, rtol=0)
    torch.testing.assert_close(matched_y.std(), content_y.std(), atol=2e-3, rtol=0)


def test_match_color_copies_mean_and_covariance():
    content = _image(6, 0.2, 0.6)
    content[:, 0] = 0.5 * content[:, 0] + 0.4 * content[:, 1]  # correlated channels
    style = _image(7, 0.3, 0.5)
    matched = match_color(style, content)
    mean, covariance = _stats(matched)
    expected_mean, expected_covariance = _stats(content)
    torch.testing.assert_close(mean, expected_mean, atol=1e-4, rtol=0)
    torch.testing.assert_close(covariance, expected_covariance, atol=1e-4, rtol=0)
