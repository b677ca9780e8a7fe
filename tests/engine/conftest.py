"""Shared fixtures: tiny synthetic images (no files needed) and the real caffe VGG19, loaded once."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from nst_engine.request import StyleRequest


def png_bytes(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(out, "PNG")
    return out.getvalue()


def landscape(width: int = 64, height: int = 48) -> np.ndarray:
    """A content-like picture: sky gradient, a dark house, a bright sun."""
    y, x = np.mgrid[0:height, 0:width]
    image = np.zeros((height, width, 3))
    image[..., 0] = 80 + 100 * y / height
    image[..., 1] = 120 + 60 * y / height
    image[..., 2] = 230 - 80 * y / height
    image[height // 2 :, width // 4 : width // 2] = (90, 50, 30)
    image[(x - 3 * width // 4) ** 2 + (y - height // 4) ** 2 < (height // 6) ** 2] = (250, 220, 60)
    return image


def brush_strokes(width: int = 64, height: int = 64) -> np.ndarray:
    """A style-like picture: saturated diagonal stripes with a wavy second pattern."""
    y, x = np.mgrid[0:height, 0:width]
    phase = (x + y) / 6.0 + np.sin(y / 4.0)
    image = np.zeros((height, width, 3))
    image[..., 0] = 127 + 127 * np.sin(phase)
    image[..., 1] = 127 + 127 * np.sin(phase + 2.1)
    image[..., 2] = 127 + 127 * np.cos(x / 3.0) * np.sin(y / 5.0)
    return image


@pytest.fixture(scope="session")
def content_png() -> bytes:
    return png_bytes(landscape())


@pytest.fixture(scope="session")
def style_png() -> bytes:
    return png_bytes(brush_strokes())


@pytest.fixture(scope="session")
def caffe_vgg():
    from nst_engine.vgg import load_vgg19

    return load_vgg19("caffe", "cpu")


@pytest.fixture
def tiny_request(content_png: bytes, style_png: bytes, caffe_vgg):
    """A request factory: 48 px, a handful of evaluations, fixed seed; keyword arguments override."""

    def make(**overrides) -> StyleRequest:
        settings = {"content": content_png, "styles": (style_png,), "size": 48, "steps": 6, "seed": 1}
        settings.update(overrides)
        return StyleRequest(**settings)

    return make
