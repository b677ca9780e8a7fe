"""Hostile but valid-looking uploads, generated in memory: each is small, and each costs a careless bot dearly.

Used by the hardening tests and by ``benchmarks/hostile_load.py``. Every builder is
deterministic and fast (the largest file, about 12 MB, takes well under a second).

- :func:`gif_many_frames`: a real 32x32 GIF followed by ~10⁶ empty frames (Pillow walks them all to count).
- :func:`png_many_chunks`: a real 1x1 PNG with ~10⁶ private (or ``tEXt``) chunks before its image data.
- :func:`apng_huge_frame_count`: a 2-frame APNG whose ``acTL`` declares 2³¹-1 frames.
- :func:`webp_huge_canvas`: an animated WebP whose canvas is 16384x16384 (1 GiB of RGBA if allocated).
- :func:`bmp_rle8`: a run-length BMP, whose decoder in Pillow is Python code: seconds for a few KB.
- :func:`png_16mp`: a 4000x4000 greyscale+alpha, 16-bit grey or palette PNG of a few tens of KB.
"""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image

from tests.badinputs import png_chunk, png_from_rows

MILLION = 1_000_000


def _save(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def gif_many_frames(frames: int = MILLION) -> bytes:
    """A valid red 32x32 GIF followed by ``frames`` empty frames (12 bytes each) before its trailer."""
    base = _save(Image.new("RGB", (32, 32), (255, 0, 0)), "GIF")
    assert base.endswith(b"\x3b")
    empty = b"\x2c" + struct.pack("<HHHH", 0, 0, 1, 1) + b"\x00" + b"\x02" + b"\x00"
    return base[:-1] + empty * frames + b"\x3b"


def png_many_chunks(chunks: int = MILLION, kind: bytes = b"prVt") -> bytes:
    """A valid 1x1 PNG with ``chunks`` extra chunks of type ``kind`` (empty, or a tiny ``tEXt``) before IDAT."""
    base = _save(Image.new("RGB", (1, 1), (255, 0, 0)), "PNG")
    header_end = 8 + 25  # signature, then IHDR (length, type, 13 bytes, CRC)
    body = b"k\x00v" if kind == b"tEXt" else b""
    filler = png_chunk(kind, body) * chunks
    return base[:header_end] + filler + base[header_end:]


def apng_huge_frame_count() -> bytes:
    """A real 2-frame 16x16 APNG whose animation-control chunk claims 2³¹-1 frames."""
    frames = [Image.new("RGB", (16, 16), (255, 0, 0)), Image.new("RGB", (16, 16), (0, 0, 255))]
    data = _save(frames[0], "PNG", save_all=True, append_images=frames[1:])
    at = data.index(b"acTL") - 4
    body = struct.pack(">II", 2**31 - 1, 0)
    return data[:at] + png_chunk(b"acTL", body) + data[at + 20 :]


def webp_huge_canvas(side: int = 16384) -> bytes:
    """A real 2-frame animated WebP whose VP8X header declares a ``side`` x ``side`` canvas."""
    frames = [Image.new("RGB", (16, 16), (255, 0, 0)), Image.new("RGB", (16, 16), (0, 0, 255))]
    data = bytearray(_save(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True))
    assert data[12:16] == b"VP8X"
    data[24:27] = (side - 1).to_bytes(3, "little")
    data[27:30] = (side - 1).to_bytes(3, "little")
    return bytes(data)


def bmp_rle8(width: int = 4000, height: int = 4000) -> bytes:
    """An 8-bit RLE-compressed BMP: every row one colour, written as runs of 255 pixels."""
    row = b""
    left = width
    while left:
        run = min(255, left)
        row += bytes((run, 1))
        left -= run
    pixels = (row + b"\x00\x00") * height + b"\x00\x01"
    palette = b"\x00\x00\x00\x00" + b"\x00\x00\xff\x00" + b"\x00" * 4 * 254
    header_size = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(pixels), 2835, 2835, 256, 0)
    file_header = b"BM" + struct.pack("<IHHI", header_size + len(pixels), 0, 0, header_size)
    return file_header + info + palette + pixels


def png_16mp(mode: str, side: int = 4000) -> bytes:
    """A ``side`` x ``side`` PNG in ``mode`` ("LA", "I;16" or "P" with transparency), compressed to a few tens of KB."""
    if mode == "LA":
        # Grey 0, alpha 0: fully transparent, so it must come out white.
        return png_from_rows(side, side, 8, 4, b"\x00" + b"\x00\x00" * side, side)
    if mode == "I;16":
        return png_from_rows(side, side, 16, 0, b"\x00" + b"\x80\x80" * side, side)
    if mode == "P":
        compressor = zlib.compressobj(9)
        row = b"\x00" + b"\x01" * side
        idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
        header = struct.pack(">IIBBBBB", side, side, 8, 3, 0, 0, 0)
        return (
            b"\x89PNG\r\n\x1a\n"
            + png_chunk(b"IHDR", header)
            + png_chunk(b"PLTE", b"\x00\x00\x00\x00\x00\xff")
            + png_chunk(b"tRNS", b"\xff\x00")
            + png_chunk(b"IDAT", idat)
            + png_chunk(b"IEND", b"")
        )
    raise ValueError(f"no 16 MP PNG in mode {mode!r}")
