"""Bounded walks over the block structure of GIF and PNG files, before Pillow sees them.

Pillow walks a PNG's chunks (up to the first image data) while merely opening it, and a
GIF's every block when asked how many frames it has, one Python step per chunk or block.
A 20 MiB file can hold millions of empty ones, and each step costs a few microseconds:
seconds of CPU for a file that decodes to one small picture.  These walks count the same
structure with a hard cap, so a hostile file is refused (or its frame count cut short)
after a bounded amount of work.
"""

from __future__ import annotations

from nst_engine.errors import BrokenImage

MAX_FRAMES = 1000
"""Frames counted in an animation; only the first is ever used, so counting stops here."""

MAX_PNG_CHUNKS = 50_000
"""A 20 MiB PNG from any encoder holds a few thousand chunks (image data is cut in 8-64 KiB pieces)."""

MAX_GIF_BLOCKS = 500_000
"""Blocks and sub-blocks of a GIF: sub-blocks are at most 255 bytes, so a 20 MiB file needs about 82,000."""

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def check_png_chunks(data: bytes) -> None:
    """Refuse a PNG holding more than :data:`MAX_PNG_CHUNKS` chunks; a damaged one is left for the decoder."""
    if not data.startswith(_PNG_SIGNATURE):
        return
    position, count, end = len(_PNG_SIGNATURE), 0, len(data)
    while position + 8 <= end:
        count += 1
        if count > MAX_PNG_CHUNKS:
            raise BrokenImage(
                f"The PNG holds more than {MAX_PNG_CHUNKS} chunks, far beyond what any editor writes. "
                "Please re-save it as an ordinary PNG or JPEG."
            )
        if data[position + 4 : position + 8] == b"IEND":
            return
        position += 12 + int.from_bytes(data[position : position + 4], "big")


def count_gif_frames(data: bytes) -> int:
    """Frames in a GIF, at most :data:`MAX_FRAMES`; refuse one with more than :data:`MAX_GIF_BLOCKS` blocks.

    A damaged structure just ends the count: the decoder then says what is wrong.
    """
    if len(data) < 13 or not data.startswith(b"GIF8"):
        return 0
    flags = data[10]
    position = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    frames = blocks = 0
    end = len(data)
    while position < end and frames < MAX_FRAMES:
        introducer = data[position]
        if introducer == 0x21:  # extension: label, then sub-blocks
            position += 2
        elif introducer == 0x2C:  # image: descriptor, optional colour table, LZW code size, then sub-blocks
            if position + 10 > end:
                break
            packed = data[position + 9]
            position += 10 + (3 << ((packed & 7) + 1) if packed & 0x80 else 0) + 1
            frames += 1
        else:  # the trailer, or something no decoder reads past
            break
        while position < end:
            blocks += 1
            if blocks > MAX_GIF_BLOCKS:
                raise BrokenImage(
                    f"The GIF holds more than {MAX_GIF_BLOCKS} blocks, far beyond what any editor writes. "
                    "Please re-save it as an ordinary GIF or PNG."
                )
            size = data[position]
            position += 1 + size
            if size == 0:
                break
    return frames
