"""decode_image beyond the corpus: real photos, reduced JPEG decoding, mode conversion, global Pillow state."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

import bot
import nst_engine
from nst_engine.errors import ImageTooLarge
from nst_engine.imageio import ImageInfo, check_dimensions, decode_image, probe_image, to_rgb
from tests.badinputs import save


@pytest.mark.parametrize("name", ["tubingen", "golden_gate", "starry_night", "the_scream", "shipwreck", "seated-nude"])
def test_real_images_decode_to_rgb(images_dir: Path, name: str) -> None:
    data = (images_dir / f"{name}.jpg").read_bytes()
    info = probe_image(data)
    image = decode_image(data, max_pixels=40_000_000)
    assert info.format == "JPEG"
    assert image.mode == "RGB"
    assert sorted(image.size) == sorted((info.width, info.height))


def test_target_long_side_decodes_jpeg_at_reduced_scale(images_dir: Path) -> None:
    data = (images_dir / "tubingen.jpg").read_bytes()
    full = decode_image(data, max_pixels=40_000_000)
    quarter = decode_image(data, max_pixels=40_000_000, target_long_side=256)
    half = decode_image(data, max_pixels=40_000_000, target_long_side=300)
    assert full.size == (1024, 768)
    assert quarter.size == (256, 192)
    assert half.size == (512, 384)
    assert decode_image(data, max_pixels=40_000_000, target_long_side=4000).size == full.size
    # The reduced decode is the same picture, not a crop.
    shrunk = np.asarray(full.resize(quarter.size, Image.Resampling.BOX), dtype=np.float32)
    assert np.abs(shrunk - np.asarray(quarter, dtype=np.float32)).mean() < 6


def test_target_long_side_leaves_other_formats_whole() -> None:
    data = save(Image.new("RGB", (400, 200), (10, 20, 30)), "PNG")
    assert decode_image(data, max_pixels=1_000_000, target_long_side=100).size == (400, 200)


def test_pixel_cap_is_inclusive() -> None:
    check_dimensions(ImageInfo("PNG", 100, 100, 1), max_pixels=10_000)
    with pytest.raises(ImageTooLarge):
        check_dimensions(ImageInfo("PNG", 100, 101, 1), max_pixels=10_000)


@pytest.mark.parametrize(
    ("mode", "values", "expected"),
    [
        ("I;16", np.array([[0, 0x8080, 0xFFFF]], np.uint16), [0, 128, 255]),
        ("I", np.array([[0, 0x8080, 0xFFFF]], np.int32), [0, 128, 255]),
        ("F", np.array([[0.0, 0.5, 1.0]], np.float32), [0, 128, 255]),
    ],
)
def test_deep_greyscale_keeps_its_tones(mode: str, values: np.ndarray, expected: list[int]) -> None:
    image = Image.fromarray(values)
    assert image.mode == mode
    rgb = to_rgb(image)
    assert rgb.mode == "RGB"
    assert np.asarray(rgb)[0, :, 0].tolist() == expected
    assert np.ptp(np.asarray(rgb)[0], axis=1).tolist() == [0, 0, 0]


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (Image.new("LA", (1, 1), (0, 0)), (255, 255, 255)),
        (Image.new("RGBA", (1, 1), (0, 0, 255, 255)), (0, 0, 255)),
        (Image.new("CMYK", (1, 1), (0, 255, 255, 0)), (255, 0, 0)),
        (Image.new("1", (1, 1), 1), (255, 255, 255)),
        (Image.new("YCbCr", (1, 1), (128, 128, 128)), (128, 128, 128)),
    ],
    ids=["LA", "RGBA", "CMYK", "1", "YCbCr"],
)
def test_every_mode_becomes_rgb(image: Image.Image, expected: tuple[int, int, int]) -> None:
    rgb = to_rgb(image)
    assert rgb.mode == "RGB"
    assert all(abs(a - b) <= 1 for a, b in zip(rgb.getpixel((0, 0)), expected, strict=True))


def test_nothing_enables_loading_truncated_images() -> None:
    """A global LOAD_TRUNCATED_IMAGES would turn every truncated upload into a half-grey picture."""
    for package in (nst_engine, bot):
        for module in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if not module.name.endswith("__main__"):
                importlib.import_module(module.name)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
