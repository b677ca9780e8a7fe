"""What the bot keeps of an upload: decoded once, shrunk to the largest size a job may ask for, re-encoded.

The downloaded bytes are decoded a single time under the pixel cap (which also reads their
facts: format, size, frames), then written back as a plain JPEG no larger than
``limits.max_size`` on its long side.  So what is stored is a few hundred KB however large
the upload was, and whatever structure a hostile file carried (frames, chunks, metadata)
never reaches the disk, the queue or the workers.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from nst_engine.imageio import ImageInfo, decode_with_info, encode_image

# Style transfer repaints every pixel: at this quality with full-resolution colour, JPEG's
# loss is far below what the optimisation changes, and the file is a fraction of a PNG's.
STORED_QUALITY = 95


@dataclass(frozen=True)
class PreparedUpload:
    """An upload ready to store: its new bytes, their size, and the facts of the original."""

    data: bytes
    width: int
    height: int
    original: ImageInfo

    @property
    def aspect(self) -> float:
        """Short side over long side."""
        return min(self.width, self.height) / max(self.width, self.height)


def prepare_upload(data: bytes, *, max_pixels: int, max_side: int) -> PreparedUpload:
    """Decode ``data`` fully under ``max_pixels`` and re-encode it at most ``max_side`` on its long side.

    Slow (a full decode): run it off the event loop. Raises :class:`~nst_engine.errors.ImageError`
    with a message for a person.
    """
    image, info = decode_with_info(data, max_pixels=max_pixels, target_long_side=max_side)
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return PreparedUpload(encode_image(image, "jpeg", STORED_QUALITY), image.width, image.height, info)
