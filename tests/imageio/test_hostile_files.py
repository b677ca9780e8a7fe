"""Hostile files against the probe and the decoder: bounded work, the pixel cap before any canvas, lean decodes."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
from PIL import GifImagePlugin, Image, PngImagePlugin

from nst_engine.containers import MAX_FRAMES, MAX_PNG_CHUNKS
from nst_engine.errors import BrokenImage, ImageTooLarge, UnsupportedFormat
from nst_engine.imageio import decode_image, decode_with_info, probe_image
from tests.hostile_files import (
    apng_huge_frame_count,
    bmp_rle8,
    gif_many_frames,
    png_16mp,
    png_many_chunks,
    webp_huge_canvas,
)

MAX_PIXELS = 16_000_000


@pytest.fixture(scope="module")
def million_frame_gif() -> bytes:
    return gif_many_frames()


def count_calls(monkeypatch: pytest.MonkeyPatch, cls: type, name: str) -> list[int]:
    """Wrap ``cls.name`` so each call is counted in the returned one-item list."""
    calls = [0]
    original = getattr(cls, name)

    def counted(*args, **kwargs):
        calls[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(cls, name, counted)
    return calls


def test_a_gif_with_a_million_frames_is_counted_up_to_the_cap_only(million_frame_gif, monkeypatch):
    seeks = count_calls(monkeypatch, GifImagePlugin.GifImageFile, "_seek")
    info = probe_image(million_frame_gif)
    assert info.frames == MAX_FRAMES
    assert seeks[0] <= 2, "Pillow must not walk the frames"
    image, facts = decode_with_info(million_frame_gif, max_pixels=MAX_PIXELS)
    assert facts.frames == MAX_FRAMES
    assert image.size == (32, 32) and image.getpixel((16, 16)) == (255, 0, 0)


@pytest.mark.parametrize("kind", [b"prVt", b"tEXt"])
def test_a_png_with_a_million_chunks_is_refused_before_pillow_walks_them(kind, monkeypatch):
    data = png_many_chunks(kind=kind)
    reads = count_calls(monkeypatch, PngImagePlugin.ChunkStream, "read")
    for attempt in (lambda: probe_image(data), lambda: decode_image(data, max_pixels=MAX_PIXELS)):
        with pytest.raises(BrokenImage, match=f"more than {MAX_PNG_CHUNKS} chunks"):
            attempt()
    assert reads[0] == 0


def test_an_ordinary_png_with_a_few_thousand_chunks_still_decodes():
    image = decode_image(png_many_chunks(2000), max_pixels=MAX_PIXELS)
    assert image.getpixel((0, 0)) == (255, 0, 0)


def test_an_apng_declaring_two_billion_frames_reports_the_cap_and_decodes_its_first():
    data = apng_huge_frame_count()
    assert probe_image(data).frames == MAX_FRAMES
    image = decode_image(data, max_pixels=MAX_PIXELS)
    assert image.size == (16, 16) and image.getpixel((8, 8)) == (255, 0, 0)


def test_a_webp_canvas_is_checked_against_the_pixel_cap_before_pillow_allocates_it(monkeypatch):
    data = webp_huge_canvas()
    opened = count_calls(monkeypatch, Image, "open")
    with pytest.raises(ImageTooLarge, match="268.4 megapixels"):
        probe_image(data, max_pixels=MAX_PIXELS)
    with pytest.raises(ImageTooLarge):
        probe_image(data)
    with pytest.raises(ImageTooLarge):
        decode_image(data, max_pixels=MAX_PIXELS)
    assert opened[0] == 0


def test_an_animated_webp_within_the_cap_still_decodes():
    data = webp_huge_canvas(64)
    assert probe_image(data, max_pixels=MAX_PIXELS).frames == 2
    assert decode_image(data, max_pixels=MAX_PIXELS).size == (64, 64)


def test_a_run_length_bmp_is_refused_before_its_python_decoder_runs(monkeypatch):
    data = bmp_rle8()
    decodes = count_calls(monkeypatch, Image.Image, "load")
    for attempt in (lambda: probe_image(data), lambda: decode_image(data, max_pixels=MAX_PIXELS)):
        with pytest.raises(UnsupportedFormat, match="RLE8 compression are not supported"):
            attempt()
    assert decodes[0] == 0


def _peak_rss_during(action) -> int:
    """Bytes the process's resident high-water mark rose by while ``action`` ran (Linux)."""
    clear = Path("/proc/self/clear_refs")
    try:
        clear.write_text("5")
    except OSError:
        pytest.skip("the kernel does not let this process reset its memory high-water mark")

    def status(key: str) -> int:
        line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(key))
        return int(line.split()[1]) * 1024

    gc.collect()
    clear.write_text("5")
    before = status("VmRSS:")
    action()
    return status("VmHWM:") - before


# Pillow keeps RGB and LA at 4 bytes a pixel: a 4000x4000 source and its result are 64 MB each.
# The whole-image float64 and RGBA-on-RGBA paths this replaced peaked at 270-460 MiB here.
LEAN_DECODE_BYTES = 160 * 2**20


@pytest.mark.parametrize(
    ("mode", "pixel"), [("LA", (255, 255, 255)), ("I;16", (128, 128, 128)), ("P", (255, 255, 255))]
)
def test_16_megapixel_greyscale_alpha_16_bit_and_palette_images_decode_without_wide_copies(mode, pixel):
    data = png_16mp(mode)
    assert len(data) < 64_000
    decoded: list[Image.Image] = []
    peak = _peak_rss_during(lambda: decoded.append(decode_image(data, max_pixels=MAX_PIXELS)))
    (image,) = decoded
    assert image.mode == "RGB" and image.size == (4000, 4000)
    assert image.getpixel((1234, 2345)) == pixel
    # The source, the result and a band of rows is all a lean decode needs.
    assert peak < LEAN_DECODE_BYTES, f"peak {peak / 2**20:.0f} MiB"
