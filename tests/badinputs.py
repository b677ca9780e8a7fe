"""A corpus of bad (and awkward but valid) image uploads, with the outcome each must get.

Every case is generated in memory, deterministically, in well under a second in all (the
30000x30000 bomb is the slowest, about half a second, and is built once per process). Use
it from any test::

    from tests.badinputs import bad_inputs, bad_input, CORPUS_MAX_PIXELS

    for case in bad_inputs():
        ...  # case.data, case.filename, case.content_type, case.error, ...

``error`` is what ``nst_engine.imageio.decode_image(case.data, max_pixels=CORPUS_MAX_PIXELS)``
must raise (``None``: it decodes, to ``case.size``, and ``case.check`` passes on the result);
``probe_error`` is what ``probe_image`` must raise, which differs where the header is fine
and only the pixels are bad or too many. The outcomes hold for any pixel cap between 1 and
89 megapixels, so the bot's tests can use their own configured cap. A bot that receives
a case as an attachment should answer with a clear refusal exactly when ``error`` is set.

``declared_size`` is the size an attachment claims (Discord's ``size`` field); it differs
from ``len(data)`` only for ``oversize_attachment``, which a downloader must refuse on its
own, before any decoding.
"""

from __future__ import annotations

import functools
import io
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from nst_engine.errors import (
    BadDimensions,
    BrokenImage,
    EmptyImage,
    ImageError,
    ImageTooLarge,
    NotAnImage,
    UnsupportedFormat,
)

CORPUS_MAX_PIXELS = 16_000_000
"""The pixel cap the expected outcomes are written for (any cap from 1 to 89 MP gives the same)."""

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


@dataclass(frozen=True)
class BadInput:
    """One upload and the outcome it must get."""

    name: str
    data: bytes
    filename: str
    content_type: str
    error: type[ImageError] | None
    probe_error: type[ImageError] | None = None
    size: tuple[int, int] | None = None
    frames: int = 1
    check: Callable[[Image.Image], None] | None = None
    declared_size: int | None = None
    description: str = ""

    @property
    def attachment_size(self) -> int:
        """The size an attachment of this case declares."""
        return len(self.data) if self.declared_size is None else self.declared_size


def bad_input(name: str) -> BadInput:
    """The case called ``name``."""
    for case in bad_inputs():
        if case.name == name:
            return case
    raise KeyError(name)


@functools.cache
def bad_inputs() -> tuple[BadInput, ...]:
    """Every case, built once per process."""
    return (
        *_valid_baselines(),
        *_empty_and_not_images(),
        *_truncated_and_corrupt(),
        *_too_large(),
        *_awkward_but_valid(),
        *_unsupported_formats(),
        _oversize_attachment(),
    )


def expect_pixel(xy: tuple[int, int], rgb: tuple[int, int, int], tolerance: int = 24) -> Callable[[Image.Image], None]:
    """A check that the decoded pixel at ``xy`` is ``rgb`` within ``tolerance`` per channel."""

    def check(image: Image.Image) -> None:
        got = image.getpixel(xy)
        close = all(abs(a - b) <= tolerance for a, b in zip(got, rgb, strict=True))
        assert close, f"pixel {xy} is {got}, expected {rgb}"

    return check


def expect_pixels(*checks: Callable[[Image.Image], None]) -> Callable[[Image.Image], None]:
    """All of ``checks``."""

    def check(image: Image.Image) -> None:
        for one in checks:
            one(image)

    return check


def gradient(width: int = 64, height: int = 48) -> Image.Image:
    """A deterministic RGB test picture with some structure, so it compresses like a photo would not."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x * y) % 256], axis=-1)
    return Image.fromarray(rgb.astype(np.uint8), "RGB")


def quadrants(width: int, height: int, colours: tuple[tuple[int, int, int], ...]) -> Image.Image:
    """An RGB image split in four: top-left, top-right, bottom-left, bottom-right."""
    image = Image.new("RGB", (width, height))
    half_w, half_h = width // 2, height // 2
    boxes = (
        (0, 0, half_w, half_h), (half_w, 0, width, half_h),
        (0, half_h, half_w, height), (half_w, half_h, width, height),
    )
    for box, colour in zip(boxes, colours, strict=True):
        image.paste(colour, box)
    return image


def save(image: Image.Image, fmt: str, **options: object) -> bytes:
    """``image`` encoded by Pillow as ``fmt``."""
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    """One PNG chunk with its length and CRC."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_from_rows(width: int, height: int, bit_depth: int, colour_type: int, block: bytes, repeat: int) -> bytes:
    """A PNG written by hand: its filtered rows are ``block`` repeated ``repeat`` times.

    The rows are compressed as a stream, so a 30000x30000 bomb is built without ever holding its pixels.
    """
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(block) for _ in range(repeat)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def _case(name: str, data: bytes, error: type[ImageError] | None, **fields: object) -> BadInput:
    kind = name.split("_", 1)[0]
    filename, content_type = _NAMING.get(kind, ("upload.png", "image/png"))
    fields.setdefault("filename", filename)
    fields.setdefault("content_type", content_type)
    return BadInput(name=name, data=data, error=error, **fields)


_NAMING = {
    "png": ("image.png", "image/png"),
    "apng": ("animation.png", "image/png"),
    "jpeg": ("photo.jpg", "image/jpeg"),
    "webp": ("image.webp", "image/webp"),
    "gif": ("animation.gif", "image/gif"),
    "bmp": ("image.bmp", "image/bmp"),
}


def _valid_baselines() -> list[BadInput]:
    picture = gradient()
    corner = expect_pixel((63, 0), (255, 0, 0), tolerance=40)
    return [
        _case("png_valid", save(picture, "PNG"), None, size=(64, 48), check=expect_pixel((63, 0), (255, 0, 0), 0)),
        _case("jpeg_valid", save(picture, "JPEG", quality=95), None, size=(64, 48), check=corner),
        _case("webp_valid", save(picture, "WEBP", quality=95), None, size=(64, 48), check=corner),
        _case("gif_valid", save(picture, "GIF"), None, size=(64, 48), check=corner),
        _case("bmp_valid", save(picture, "BMP"), None, size=(64, 48), check=expect_pixel((63, 0), (255, 0, 0), 0)),
    ]


def _empty_and_not_images() -> list[BadInput]:
    html = (
        b"<!DOCTYPE html>\n<html><head><title>403 Forbidden</title></head>\n"
        b"<body><h1>403 Forbidden</h1><p>You don't have permission to access this resource.</p></body></html>\n"
    )
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        # A fixed timestamp keeps the archive's bytes identical from run to run.
        bundle.writestr(zipfile.ZipInfo("cat.png", date_time=(2020, 1, 1, 0, 0, 0)), save(gradient(), "PNG"))
    return [
        _case("empty", b"", EmptyImage, probe_error=EmptyImage, description="zero bytes"),
        _case("html_as_png", html, NotAnImage, probe_error=NotAnImage, filename="cat.png", content_type="image/png",
              description="an HTTP error page saved with an image's name and type"),
        _case("text_as_jpeg", b"Hello! This is not a picture, just some words.\n" * 4, NotAnImage,
              probe_error=NotAnImage, filename="photo.jpg", content_type="image/jpeg"),
        _case("json_as_png", b'{"message": "404: Not Found", "code": 0}', NotAnImage, probe_error=NotAnImage,
              filename="image.png", content_type="image/png", description="a CDN's JSON error body"),
        _case("zip_as_png", archive.getvalue(), NotAnImage, probe_error=NotAnImage, filename="image.png",
              content_type="image/png", description="a ZIP archive holding a PNG"),
    ]


def _truncated_and_corrupt() -> list[BadInput]:
    png = save(gradient(), "PNG")
    idat = png.index(b"IDAT")
    jpeg = save(gradient(), "JPEG", quality=90)
    scan = jpeg.index(b"\xff\xda")
    corrupt = bytearray(png)
    for offset in range(idat + 40, idat + 80):
        corrupt[offset] ^= 0x5A
    gif = save(gradient(), "GIF")
    webp = save(gradient(), "WEBP", quality=90)
    cases = [
        # Cut inside the header: nothing can be read at all.
        _case("png_truncated_signature", png[:8], BrokenImage, probe_error=BrokenImage),
        _case("png_truncated_header", png[:20], BrokenImage, probe_error=BrokenImage),
        _case("png_truncated_before_data", png[:idat - 4], BrokenImage, probe_error=BrokenImage),
        # Cut inside the pixel data: the header reads, the decode must fail cleanly.
        _case("png_truncated_data_start", png[:idat + 20], BrokenImage, size=(64, 48)),
        _case("png_truncated_half", png[: len(png) // 2], BrokenImage, size=(64, 48)),
        _case("png_corrupt_data", bytes(corrupt), BrokenImage, size=(64, 48), description="bytes flipped inside IDAT"),
        _case("jpeg_truncated_marker", jpeg[:2], BrokenImage, probe_error=BrokenImage),
        _case("jpeg_truncated_header", jpeg[:100], BrokenImage, probe_error=BrokenImage),
        _case("jpeg_truncated_scan_start", jpeg[: scan + 20], BrokenImage, size=(64, 48)),
        _case("jpeg_truncated_half", jpeg[: len(jpeg) // 2], BrokenImage, size=(64, 48)),
        _case("jpeg_truncated_end", jpeg[:-2], BrokenImage, size=(64, 48), description="only the end marker missing"),
        _case("gif_truncated_half", gif[: len(gif) // 2], BrokenImage, size=(64, 48)),
        _case("webp_truncated_half", webp[: len(webp) // 2], BrokenImage, probe_error=BrokenImage),
    ]
    return cases


def _too_large() -> list[BadInput]:
    bomb_30k = png_from_rows(30000, 30000, 1, 0, bytes(1 + 30000 // 8) * 1000, repeat=30)
    bomb_10k = png_from_rows(10000, 10000, 1, 0, bytes(1 + 10000 // 8) * 1000, repeat=10)
    huge_jpeg = bytearray(save(gradient(), "JPEG"))
    sof = huge_jpeg.index(b"\xff\xc0")
    huge_jpeg[sof + 5 : sof + 9] = struct.pack(">HH", 12000, 12000)
    max_png = (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 2**31 - 1, 2**31 - 1, 8, 2, 0, 0, 0))
        + png_chunk(b"IDAT", zlib.compress(bytes(64))) + png_chunk(b"IEND", b"")
    )
    gif_canvas = (
        b"GIF89a" + struct.pack("<HH", 65535, 65535) + b"\x00\x00\x00"
        + b"\x2c" + struct.pack("<HHHH", 0, 0, 1, 1) + b"\x00" + b"\x02\x02\x4c\x01\x00" + b"\x3b"
    )
    bmp_header = struct.pack("<IiiHHIIiiII", 40, 50000, 50000, 1, 24, 0, 0, 0, 0, 0, 0)
    huge_bmp = b"BM" + struct.pack("<IHHI", 54 + 64, 0, 0, 54) + bmp_header + bytes(64)
    webp_canvas = b"VP8X" + struct.pack("<I", 10) + bytes(4) + (13000 - 1).to_bytes(3, "little") * 2
    huge_webp = b"RIFF" + struct.pack("<I", 4 + len(webp_canvas)) + b"WEBP" + webp_canvas
    progressive = save(gradient(32, 32), "JPEG", progressive=True)
    last_scan = progressive.rindex(b"\xff\xda")
    scan_bomb = progressive[:last_scan] + progressive[last_scan:-2] * 300 + b"\xff\xd9"
    return [
        _case("png_bomb_30000", bomb_30k, ImageTooLarge, probe_error=ImageTooLarge,
              description="30000x30000 1-bit PNG, ~110 KB, 900 MP: beyond Pillow's own hard limit"),
        _case("png_bomb_10000", bomb_10k, ImageTooLarge, size=(10000, 10000),
              description="10000x10000 1-bit PNG, ~12 KB, 100 MP: only our cap stops it"),
        _case("jpeg_huge_header", bytes(huge_jpeg), ImageTooLarge, size=(12000, 12000),
              description="a 64x48 JPEG whose header claims 12000x12000; decoding it would fail, so "
                          "ImageTooLarge proves the cap ran first"),
        _case("webp_huge_header", huge_webp, ImageTooLarge, probe_error=ImageTooLarge,
              description="a bare WebP header declaring a 13000x13000 canvas, which Pillow would allocate "
                          "(676 MB) on opening: probing and decoding must both refuse it first"),
        _case("jpeg_scan_bomb", scan_bomb, BrokenImage, size=(32, 32),
              description="a progressive JPEG with 300 copies of its last scan: each scan is a pass over "
                          "every pixel, so this shape stalls decoders at large sizes"),
        _case("png_header_max_dimensions", max_png, ImageTooLarge, probe_error=ImageTooLarge,
              description="an IHDR declaring 2147483647x2147483647 over 64 bytes of pixels"),
        _case("gif_huge_canvas", gif_canvas, ImageTooLarge, probe_error=ImageTooLarge,
              description="a 65535x65535 canvas holding one pixel"),
        _case("bmp_huge_header", huge_bmp, ImageTooLarge, probe_error=ImageTooLarge,
              description="a BMP header declaring 50000x50000"),
    ]


def _awkward_but_valid() -> list[BadInput]:
    return [
        *_animated(),
        *_colour_modes(),
        *_orientation_and_shape(),
    ]


def _animated() -> list[BadInput]:
    # Frames must differ, or the encoders merge them into one.
    frames = [Image.new("RGB", (32, 32), RED)] + [Image.new("RGB", (32, 32), (0, i, 255 - i)) for i in range(1, 200)]
    first_red = expect_pixel((16, 16), RED, tolerance=8)
    return [
        _case("gif_animated_200_frames", save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=20),
              None, size=(32, 32), frames=200, check=first_red),
        _case("apng_200_frames", save(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=20),
              None, size=(32, 32), frames=200, check=first_red),
        _case("webp_animated_50_frames",
              save(frames[0], "WEBP", save_all=True, append_images=frames[1:50], duration=20, lossless=True),
              None, size=(32, 32), frames=50, check=first_red),
    ]


def _colour_modes() -> list[BadInput]:
    four = quadrants(32, 32, (RED, GREEN, BLUE, WHITE))
    four_checks = expect_pixels(
        expect_pixel((8, 8), RED, 40), expect_pixel((24, 8), GREEN, 40),
        expect_pixel((8, 24), BLUE, 40), expect_pixel((24, 24), WHITE, 40),
    )
    grey16 = np.zeros((32, 64), np.uint16)
    grey16[:, :32] = 0x8080
    grey16[:, 32:] = 0xFFFF
    rgb16_row = b"\x00" + struct.pack(">HHH", 0x8000, 0x4000, 0xFFFF) * 16
    palette = Image.new("P", (32, 32), 0)
    palette.putpalette([0, 0, 0, 0, 0, 255] + [0, 0, 0] * 254)
    palette.paste(1, (16, 0, 32, 32))
    translucent = Image.new("RGBA", (32, 32), (255, 0, 0, 128))
    grey_alpha = Image.new("LA", (32, 32), (0, 0))
    grey_alpha.paste((0, 255), (16, 0, 32, 32))
    return [
        _case("jpeg_cmyk", save(four.convert("CMYK"), "JPEG", quality=95), None, size=(32, 32), check=four_checks),
        _case("png_16bit_grey", save(Image.fromarray(grey16), "PNG"), None, size=(64, 32),
              check=expect_pixels(expect_pixel((8, 8), (128, 128, 128), 1), expect_pixel((48, 8), WHITE, 0)),
              description="16-bit greyscale: mid-grey must stay mid-grey, not clip to white"),
        _case("png_16bit_rgb", png_from_rows(16, 16, 16, 2, rgb16_row * 16, repeat=1), None, size=(16, 16),
              check=expect_pixel((4, 4), (128, 64, 255), 1)),
        _case("png_palette_transparency", save(palette, "PNG", transparency=0), None, size=(32, 32),
              check=expect_pixels(expect_pixel((4, 4), WHITE, 0), expect_pixel((28, 4), BLUE, 0)),
              description="palette PNG whose index 0 (black) is transparent: must come out white"),
        _case("png_rgba_translucent", save(translucent, "PNG"), None, size=(32, 32),
              check=expect_pixel((4, 4), (255, 127, 127), 1), description="half-transparent red over white"),
        _case("png_grey_alpha", save(grey_alpha, "PNG"), None, size=(32, 32),
              check=expect_pixels(expect_pixel((4, 4), WHITE, 0), expect_pixel((28, 4), (0, 0, 0), 0))),
        _case("png_greyscale", save(gradient().convert("L"), "PNG"), None, size=(64, 48)),
        _case("jpeg_greyscale", save(gradient().convert("L"), "JPEG"), None, size=(64, 48)),
        _case("png_1bit", save(gradient().convert("1"), "PNG"), None, size=(64, 48)),
        _case("bmp_palette", save(four.convert("P"), "BMP"), None, size=(32, 32), check=four_checks),
    ]


def _orientation_and_shape() -> list[BadInput]:
    stored = quadrants(40, 20, (RED, GREEN, BLUE, WHITE))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    # Displayed 20x40: the stored top-left (red) lands top-right, stored bottom-left (blue) top-left.
    rotated_checks = expect_pixels(
        expect_pixel((5, 10), BLUE, 40), expect_pixel((15, 10), RED, 40),
        expect_pixel((5, 30), WHITE, 40), expect_pixel((15, 30), GREEN, 40),
    )
    return [
        _case("jpeg_exif_rotated", save(stored, "JPEG", quality=95, subsampling=0, exif=exif), None, size=(20, 40),
              check=rotated_checks, description="stored 40x20 with EXIF orientation 6"),
        _case("png_1x1", save(Image.new("RGB", (1, 1), RED), "PNG"), None, size=(1, 1),
              check=expect_pixel((0, 0), RED, 0)),
        _case("png_1x10000", save(Image.new("RGB", (1, 10000), RED), "PNG"), BadDimensions, size=(1, 10000)),
        _case("png_10000x1", save(Image.new("RGB", (10000, 1), RED), "PNG"), BadDimensions, size=(10000, 1)),
        _case("png_aspect_16", save(Image.new("RGB", (256, 16), RED), "PNG"), None, size=(256, 16),
              description="the most extreme shape still accepted"),
    ]


def _unsupported_formats() -> list[BadInput]:
    small = gradient(8, 8)
    psd = (
        b"8BPS" + struct.pack(">H6sHIIHH", 1, bytes(6), 3, 8, 8, 8, 3)
        + struct.pack(">III", 0, 0, 0) + struct.pack(">H", 0) + bytes(8 * 8 * 3)
    )
    eps = (
        b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n%%EndComments\n"
        b"newpath 0 0 moveto 8 0 lineto 8 8 lineto closepath fill\nshowpage\n%%EOF\n"
    )
    svg = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect width="8" height="8" fill="red"/></svg>\n'
    )
    heic = struct.pack(">I", 24) + b"ftypheic" + bytes(4) + b"mif1heic" + bytes(64)
    return [
        _case("tiff", save(small, "TIFF"), UnsupportedFormat, probe_error=UnsupportedFormat,
              filename="scan.tiff", content_type="image/tiff"),
        _case("psd", psd, UnsupportedFormat, probe_error=UnsupportedFormat,
              filename="layers.psd", content_type="image/vnd.adobe.photoshop"),
        _case("eps", eps, UnsupportedFormat, probe_error=UnsupportedFormat, filename="logo.eps",
              content_type="application/postscript", description="must never reach Ghostscript"),
        _case("svg", svg, UnsupportedFormat, probe_error=UnsupportedFormat,
              filename="logo.svg", content_type="image/svg+xml"),
        _case("ico", save(small, "ICO"), UnsupportedFormat, probe_error=UnsupportedFormat,
              filename="favicon.ico", content_type="image/x-icon"),
        _case("avif", save(small, "AVIF"), UnsupportedFormat, probe_error=UnsupportedFormat,
              filename="photo.avif", content_type="image/avif"),
        _case("heic", heic, UnsupportedFormat, probe_error=UnsupportedFormat,
              filename="IMG_0001.HEIC", content_type="image/heic", description="an iPhone photo's header"),
    ]


def _oversize_attachment() -> BadInput:
    data = save(gradient(), "PNG")
    return _case("oversize_attachment", data, None, size=(64, 48), declared_size=len(data) // 2,
                 description="a valid PNG twice the size its attachment declares: the downloader must refuse it")
