"""Safe image decoding and encoding.

Everything a user uploads passes through here before it reaches the network. The rules:
only PNG, JPEG, WebP, GIF and BMP are opened (Pillow never even tries its other plugins,
so an EPS file can never reach Ghostscript); the pixel count declared in the header is
checked before a single pixel is decoded; whatever the mode, the result is 8-bit RGB with
the EXIF orientation applied; and every failure is a typed :class:`ImageError` whose
message a person can act on.
"""

from __future__ import annotations

import io
import math
import os
import re
import struct
import warnings
import zlib
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from nst_engine.containers import MAX_FRAMES, check_png_chunks, count_gif_frames
from nst_engine.errors import (
    BadDimensions,
    BrokenImage,
    EmptyImage,
    ImageTooLarge,
    InvalidRequest,
    NotAnImage,
    UnsupportedFormat,
)

ACCEPTED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
"""Pillow format names we open; nothing else is ever handed to Pillow's plugin registry."""

MAX_ASPECT_RATIO = 16
"""Longest side over shortest side. Beyond this, resizing to any working size leaves the
short side too few pixels for VGG19's five pooling stages to see anything."""

MAX_JPEG_SCANS = 100
"""Progressive JPEGs hold about ten scans. Each scan is a pass over every pixel, so a few
bytes per extra scan can stall a decoder for minutes; far more than this is an attack."""

EncodeFormat = Literal["png", "jpeg", "webp"]

# Pillow opens JPEGs that carry several pictures (phone depth maps, 3D cameras) as "MPO";
# the first picture is an ordinary JPEG, and that is what users mean.
_FORMAT_ALIASES = {"MPO": "JPEG"}

_FORMAT_NAMES = {"PNG": "PNG", "JPEG": "JPEG", "WEBP": "WebP", "GIF": "GIF", "BMP": "BMP"}

# BMP compression codes whose decoder is written in Python: seconds of CPU for a few KB of file.
_BMP_RLE = {1: "RLE8", 2: "RLE4"}

# Rows converted at a time from 16/32-bit greyscale, so no whole-image wide copy is ever made.
_BAND_ROWS = 256

# (prefix at offset 0, format name) for files that are images, but not in a format we take.
_UNSUPPORTED_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),
    (b"MM\x00+", "TIFF"),
    (b"8BPS", "Photoshop (PSD)"),
    (b"%!PS", "PostScript/EPS"),
    (b"\xc5\xd0\xd3\xc6", "EPS"),
    (b"%PDF", "PDF"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"\x00\x00\x02\x00", "CUR"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL"),
    (b"\xff\x0a", "JPEG XL"),
    (b"DDS ", "DDS"),
    (b"gimp xcf", "GIMP (XCF)"),
    (b"qoif", "QOI"),
    (b"v/1\x01", "OpenEXR"),
    (b"#?RADIANCE", "Radiance HDR"),
)

# ISO base media brands (bytes 8..12 after "ftyp" at 4) of still-image formats.
_FTYP_BRANDS = {
    b"heic": "HEIC",
    b"heix": "HEIC",
    b"heim": "HEIC",
    b"heis": "HEIC",
    b"hevc": "HEIC",
    b"mif1": "HEIF",
    b"msf1": "HEIF",
    b"avif": "AVIF",
    b"avis": "AVIF",
}

_SVG_PATTERN = re.compile(rb"<svg[\s>]", re.IGNORECASE)
_HTML_PATTERN = re.compile(rb"<!doctype html|<html[\s>]|<head[\s>]|<body[\s>]", re.IGNORECASE)

# What Pillow raises from deep inside a decoder when the bytes are not what the header promised.
_DECODE_ERRORS = (OSError, SyntaxError, EOFError, ValueError, IndexError, TypeError, struct.error, zlib.error)


@dataclass(frozen=True)
class ImageInfo:
    """What an image's header says, read without decoding any pixel."""

    format: str
    width: int
    height: int
    frames: int


def probe_image(data: bytes, *, max_pixels: int | None = None) -> ImageInfo:
    """Read the format, size and frame count (at most :data:`MAX_FRAMES`) from the header of ``data``.

    The work is bounded whatever the file holds: chunks and blocks are counted with a cap,
    and a WebP canvas is checked against ``max_pixels`` (Pillow's own bomb limit when None)
    before Pillow allocates it. Raises :class:`EmptyImage`, :class:`NotAnImage`,
    :class:`UnsupportedFormat`, :class:`BrokenImage`, or :class:`ImageTooLarge`.
    """
    with _open(data, max_pixels) as image:
        return _info(image, data)


def check_dimensions(info: ImageInfo, *, max_pixels: int) -> None:
    """Refuse, before decoding, an image with too many pixels or an unusable shape."""
    pixels = info.width * info.height
    if pixels > max_pixels:
        raise ImageTooLarge(
            f"The image is {info.width}x{info.height} pixels ({pixels / 1e6:.1f} megapixels), more than the "
            f"{max_pixels / 1e6:.1f} megapixels allowed. Please send a smaller image."
        )
    long_side, short_side = max(info.width, info.height), min(info.width, info.height)
    if short_side < 1 or long_side > MAX_ASPECT_RATIO * short_side:
        raise BadDimensions(
            f"The image is {info.width}x{info.height} pixels, too thin to style: its long side may be at most "
            f"{MAX_ASPECT_RATIO} times its short side. Please crop it to a less extreme shape."
        )


def decode_image(
    data: bytes | os.PathLike[str], *, max_pixels: int, target_long_side: int | None = None
) -> Image.Image:
    """Decode ``data`` (bytes, or a file to read them from) into an 8-bit RGB image, safely.

    The pixel cap is checked on the header before any decoding. Animated images give their
    first frame; EXIF orientation is applied; transparency is composited on white.
    ``target_long_side`` lets JPEG decode at a reduced scale (never below that long side)
    when the caller will shrink the image anyway, which saves time and memory.
    """
    return decode_with_info(data, max_pixels=max_pixels, target_long_side=target_long_side)[0]


def decode_with_info(
    data: bytes | os.PathLike[str], *, max_pixels: int, target_long_side: int | None = None
) -> tuple[Image.Image, ImageInfo]:
    """:func:`decode_image`, and the facts of :func:`probe_image` read in the same single pass."""
    if not isinstance(data, bytes):
        data = _read_file(data)
    with _open(data, max_pixels) as image:
        info = _info(image, data)
        check_dimensions(info, max_pixels=max_pixels)
        # Entropy-coded data escapes every 0xFF byte, so this pair only occurs as a real start-of-scan marker.
        if info.format == "JPEG" and data.count(b"\xff\xda") > MAX_JPEG_SCANS:
            raise BrokenImage(
                f"The JPEG holds more than {MAX_JPEG_SCANS} scans, far beyond what any camera or editor writes. "
                "Please re-save it as an ordinary JPEG or PNG."
            )
        if target_long_side and info.format == "JPEG" and target_long_side < max(info.width, info.height):
            scale = target_long_side / max(info.width, info.height)
            image.draft(None, (math.ceil(info.width * scale), math.ceil(info.height * scale)))
        try:
            image.load()
        except _DECODE_ERRORS as error:
            raise _broken(info.format) from error
        _apply_orientation(image)
        rgb = to_rgb(image)
        # The opened image is closed on leaving this block; a result that is that very image must outlive it.
        return (rgb.copy() if rgb is image else rgb), info


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB without losing its tones.

    16-bit and 32-bit integer greyscale are scaled down from 0..65535 (a plain ``convert``
    would clip them to white); float images are read as 0..1. Transparent pixels are
    composited on white: transparent areas usually hold arbitrary colour (often black)
    that the network would otherwise paint, while white reads as the empty paper that a
    cut-out, logo or sticker is meant to sit on.
    """
    if image.mode.startswith("I") or image.mode == "F":
        image = _to_eight_bit(image)
    if image.mode == "P" and image.palette is not None and image.palette.mode == "RGB":
        return _palette_on_white(image)
    if image.mode in ("P", "LA", "La", "RGBA", "RGBa", "PA") or "transparency" in image.info:
        return _on_white(image)
    return image if image.mode == "RGB" else image.convert("RGB")


def _to_eight_bit(image: Image.Image) -> Image.Image:
    """16/32-bit integer greyscale (0..65535) or float (0..1) to 8-bit "L", a band of rows at a time.

    Integer arithmetic on bands keeps the extra memory to a few rows, where a whole-image
    float64 copy would cost eight bytes per pixel, several times over.
    """
    width, height = image.size
    out = np.empty((height, width), np.uint8)
    for top in range(0, height, _BAND_ROWS):
        band = np.asarray(image.crop((0, top, width, min(height, top + _BAND_ROWS))))
        if image.mode == "F":
            levels = np.rint(np.clip(np.nan_to_num(band.astype(np.float32)), 0.0, 1.0) * 255.0)
        else:
            # (v + 128) // 257 rounds v / 257 to the nearest integer; v / 257 is never exactly half-way.
            levels = (np.clip(band.astype(np.int64), 0, 65535) + 128) // 257
        out[top : top + band.shape[0]] = levels
    return Image.fromarray(out, "L")


def _palette_on_white(image: Image.Image) -> Image.Image:
    """A palette image, its transparent entries composited on white in the palette itself (256 colours, not every pixel)."""
    if "transparency" not in image.info:
        return image.convert("RGB")
    entries = Image.frombytes("P", (256, 1), bytes(range(256)))
    entries.putpalette(image.getpalette() or [])
    entries.info["transparency"] = image.info["transparency"]
    colours = _on_white(entries)
    flat = image.copy()
    flat.info.pop("transparency", None)
    flat.putpalette(colours.tobytes(), "RGB")
    return flat.convert("RGB")


def _on_white(image: Image.Image) -> Image.Image:
    """Composite a transparent image on white, a band of rows at a time (no whole-image RGBA copies)."""
    width, height = image.size
    out = Image.new("RGB", image.size, (255, 255, 255))
    for top in range(0, height, _BAND_ROWS):
        box = (0, top, width, min(height, top + _BAND_ROWS))
        band = image.crop(box)
        if band.mode not in ("LA", "RGBA"):
            band = band.convert("RGBA")
        out.paste(band.convert("RGB"), box, band.getchannel("A"))
    return out


def encode_image(image: np.ndarray | Image.Image, fmt: EncodeFormat, quality: int = 90) -> bytes:
    """Encode an RGB image as PNG, JPEG or WebP bytes.

    Arrays are HxWx3 (or HxW greyscale): ``uint8`` as is, floats taken as 0..1 and clipped.
    ``quality`` (1-100) applies to JPEG and WebP.
    """
    fmt_key = str(fmt).lower()
    if fmt_key == "jpg":
        fmt_key = "jpeg"
    if fmt_key not in ("png", "jpeg", "webp"):
        raise InvalidRequest(f"Cannot save images as {fmt!r}; choose png, jpeg or webp.")
    if not 1 <= quality <= 100:
        raise InvalidRequest(f"The image quality must be between 1 and 100, not {quality}.")
    picture = to_rgb(_as_pil(image))
    out = io.BytesIO()
    if fmt_key == "png":
        picture.save(out, "PNG", compress_level=6)
    elif fmt_key == "jpeg":
        # Full-resolution chroma: stylised images are full of fine colour strokes that
        # 4:2:0 subsampling smears. No optimize=True: Pillow then sizes libjpeg's buffer
        # from the pixel count, which noisy images overflow ("Suspension not allowed here").
        picture.save(out, "JPEG", quality=quality, subsampling=0)
    else:
        picture.save(out, "WEBP", quality=quality)
    return out.getvalue()


def _as_pil(image: np.ndarray | Image.Image) -> Image.Image:
    if isinstance(image, Image.Image):
        return image
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))) or 0 in array.shape:
        raise InvalidRequest(f"Cannot encode an array of shape {array.shape}; expected HxWx3 or HxW.")
    if array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.floating):
            raise InvalidRequest(f"Cannot encode an array of type {array.dtype}; expected uint8 or float.")
        array = np.clip(np.rint(np.nan_to_num(array) * 255.0), 0, 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(array))


def _read_file(path: os.PathLike[str]) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        raise NotAnImage("The image file is no longer stored. Please send the image again.") from None


def _open(data: bytes, max_pixels: int | None = None) -> Image.Image:
    """Open the header of ``data`` with the accepted plugins only, or raise the right error.

    What Pillow would walk or allocate while opening is checked first: a PNG's chunk count,
    and a WebP's canvas against ``max_pixels`` (Pillow's bomb limit when None).
    """
    if not data:
        raise EmptyImage("The file is empty (0 bytes). Please upload the image again.")
    check_png_chunks(data)
    if webp_size := _declared_webp_size(data):
        width, height = webp_size
        if max_pixels is None and width * height > Image.MAX_IMAGE_PIXELS:
            raise _bomb()
        if max_pixels is not None:
            check_dimensions(ImageInfo("WEBP", width, height, 1), max_pixels=max_pixels)
    try:
        with warnings.catch_warnings():
            # The caller's own pixel cap decides; Pillow's warning threshold is just noise here.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=list(ACCEPTED_FORMATS))
    except Image.DecompressionBombError as error:
        raise _bomb() from error
    except UnidentifiedImageError:
        raise _unidentified(data) from None
    except _DECODE_ERRORS as error:
        raise _broken(_known_format(data)) from error
    fmt = _FORMAT_ALIASES.get(image.format or "", image.format or "")
    if fmt not in ACCEPTED_FORMATS:
        image.close()
        raise UnsupportedFormat(f"Images in {fmt} format are not supported; please send a PNG, JPEG, WebP, GIF or BMP.")
    return image


def _info(image: Image.Image, data: bytes) -> ImageInfo:
    fmt = _FORMAT_ALIASES.get(image.format or "", image.format or "")
    if fmt == "BMP" and image.info.get("compression") in _BMP_RLE:
        raise UnsupportedFormat(
            f"BMP images with {_BMP_RLE[image.info['compression']]} compression are not supported; "
            "please convert it to PNG or JPEG and send it again."
        )
    try:
        # Pillow counts a GIF's frames by walking every block: count them first, with a cap.
        counted = count_gif_frames(data) if fmt == "GIF" else 0
        frames = MAX_FRAMES if counted >= MAX_FRAMES else min(MAX_FRAMES, int(getattr(image, "n_frames", 1)))
    except Image.DecompressionBombError as error:
        raise _bomb() from error
    except _DECODE_ERRORS as error:
        raise _broken(fmt) from error
    width, height = image.size
    return ImageInfo(format=fmt, width=width, height=height, frames=frames)


def _apply_orientation(image: Image.Image) -> None:
    """Turn ``image`` upright in place (a copy would cost a whole image for nothing when it already is)."""
    try:
        ImageOps.exif_transpose(image, in_place=True)
    except _DECODE_ERRORS:
        # A damaged EXIF block only loses the rotation hint; the pixels themselves are fine.
        pass


def _declared_webp_size(data: bytes) -> tuple[int, int] | None:
    """The canvas size in a WebP header.

    Pillow's WebP plugin allocates the whole canvas while merely opening the file, so the
    pixel cap has to be checked on these header bytes before Pillow sees them.
    """
    if len(data) < 30 or not data.startswith(b"RIFF") or data[8:12] != b"WEBP":
        return None
    chunk = data[12:16]
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        return int.from_bytes(data[26:28], "little") & 0x3FFF, int.from_bytes(data[28:30], "little") & 0x3FFF
    if chunk == b"VP8X":
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    if chunk == b"VP8L" and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


def _bomb() -> ImageTooLarge:
    return ImageTooLarge(
        "The image declares far more pixels than anyone could process (a possible decompression bomb). "
        "Please send a smaller image."
    )


def _broken(fmt: str | None) -> BrokenImage:
    which = f" ({_FORMAT_NAMES.get(fmt, fmt)})" if fmt else ""
    return BrokenImage(f"The image is truncated or corrupt{which}. Try re-saving it or uploading it again.")


def _known_format(data: bytes) -> str | None:
    """The accepted format whose signature ``data`` starts with, even if the rest is damaged."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"[: max(4, min(len(data), 8))]):
        return "PNG"
    if data.startswith(b"\xff\xd8"):
        return "JPEG"
    if data.startswith(b"GIF8"):
        return "GIF"
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "WEBP"
    # "BM" alone is too common at the start of text; a BMP also has four reserved zero bytes.
    if data.startswith(b"BM") and len(data) >= 10 and data[6:10] == b"\x00\x00\x00\x00":
        return "BMP"
    return None


def _unidentified(data: bytes) -> Exception:
    """The error for bytes no accepted plugin recognised."""
    known = _known_format(data)
    if known:
        return _broken(known)
    for magic, name in _UNSUPPORTED_MAGIC:
        if data.startswith(magic):
            return _unsupported(name)
    if data[4:8] == b"ftyp" and data[8:12] in _FTYP_BRANDS:
        return _unsupported(_FTYP_BRANDS[data[8:12]])
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"<") and _SVG_PATTERN.search(head):
        return _unsupported("SVG")
    if _HTML_PATTERN.search(head):
        return NotAnImage(
            "This file is a web page (HTML), not an image. If it came from a link, the link probably points to "
            "a page around the image rather than to the image itself."
        )
    if data.startswith(b"PK\x03\x04"):
        return NotAnImage("This file is a ZIP archive, not an image. Please send the image itself.")
    return NotAnImage("This file is not an image. Please send a PNG, JPEG, WebP, GIF or BMP.")


def _unsupported(name: str) -> UnsupportedFormat:
    return UnsupportedFormat(
        f"Images in {name} format are not supported; please convert it to PNG or JPEG and send it again."
    )
