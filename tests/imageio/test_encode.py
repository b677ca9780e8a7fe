"""encode_image: formats, round trips and refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nst_engine.errors import InvalidRequest
from nst_engine.imageio import decode_image, encode_image

SIGNATURES = {"png": b"\x89PNG\r\n\x1a\n", "jpeg": b"\xff\xd8\xff", "webp": b"RIFF"}


@pytest.fixture(scope="module")
def photo(images_dir: Path) -> np.ndarray:
    image = decode_image((images_dir / "tubingen.jpg").read_bytes(), max_pixels=40_000_000, target_long_side=64)
    return np.asarray(image.resize((64, 48), Image.Resampling.LANCZOS))


def roundtrip(data: bytes) -> np.ndarray:
    return np.asarray(decode_image(data, max_pixels=1_000_000), dtype=np.float32)


def test_png_is_lossless(photo: np.ndarray) -> None:
    data = encode_image(photo, "png")
    assert data.startswith(SIGNATURES["png"])
    assert np.array_equal(roundtrip(data), photo)


@pytest.mark.parametrize("fmt", ["jpeg", "webp"])
def test_lossy_formats_stay_close(photo: np.ndarray, fmt: str) -> None:
    data = encode_image(photo, fmt, quality=90)
    assert data.startswith(SIGNATURES[fmt])
    assert np.abs(roundtrip(data) - photo).mean() < 4


@pytest.mark.parametrize("fmt", ["jpeg", "webp"])
def test_quality_trades_size(photo: np.ndarray, fmt: str) -> None:
    assert len(encode_image(photo, fmt, quality=30)) < len(encode_image(photo, fmt, quality=95))


def test_float_arrays_are_read_as_unit_range(photo: np.ndarray) -> None:
    as_float = photo.astype(np.float32) / 255.0
    assert encode_image(as_float, "png") == encode_image(photo, "png")
    clipped = roundtrip(encode_image(np.full((4, 4, 3), 1.7, np.float32), "png"))
    assert (clipped == 255).all()


def test_greyscale_and_alpha_inputs_become_rgb() -> None:
    grey = roundtrip(encode_image(np.full((8, 8), 100, np.uint8), "png"))
    assert grey.shape == (8, 8, 3)
    assert (grey == 100).all()
    transparent = roundtrip(encode_image(Image.new("RGBA", (8, 8), (0, 0, 0, 0)), "jpeg"))
    assert transparent.min() > 250


def test_jpg_is_an_alias_of_jpeg(photo: np.ndarray) -> None:
    assert encode_image(photo, "jpg") == encode_image(photo, "jpeg")


@pytest.mark.parametrize(
    ("image", "fmt", "quality"),
    [
        (np.zeros((4, 4, 3), np.uint8), "gif", 90),
        (np.zeros((4, 4, 3), np.uint8), "png", 0),
        (np.zeros((4, 4, 3), np.uint8), "jpeg", 101),
        (np.zeros((4, 4, 5), np.uint8), "png", 90),
        (np.zeros((0, 4, 3), np.uint8), "png", 90),
        (np.zeros((4, 4, 3), np.int64), "png", 90),
    ],
    ids=["format", "quality-low", "quality-high", "channels", "empty", "dtype"],
)
def test_refusals_are_typed(image: np.ndarray, fmt: str, quality: int) -> None:
    with pytest.raises(InvalidRequest):
        encode_image(image, fmt, quality)


@pytest.mark.parametrize("quality", [92, 100])
def test_jpeg_encodes_noise_that_compresses_worse_than_one_byte_per_pixel(quality: int) -> None:
    noise = np.random.default_rng(0).integers(0, 256, size=(256, 256, 3), dtype=np.uint8)
    data = encode_image(noise, "jpeg", quality)
    assert len(data) > 256 * 256
    assert roundtrip(data).shape == (256, 256, 3)
