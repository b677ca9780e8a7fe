"""Choosing how a finished image is uploaded: PNG when it fits, smaller formats when not."""

from __future__ import annotations

import io

from PIL import Image

from nst_engine.imageio import encode_image

# Room for the multipart framing around the file; Discord's limit applies to the upload.
_MARGIN = 4096

# Tried in order once PNG is too large: best-looking first.
_FALLBACKS: tuple[tuple[str, int], ...] = (("jpeg", 92), ("webp", 90), ("jpeg", 80), ("webp", 75), ("jpeg", 65))


def fit_upload(png: bytes, limit: int, stem: str) -> tuple[str, bytes]:
    """Return ``(filename, bytes)``: the PNG if it fits in ``limit`` bytes, else JPEG/WebP, else a smaller image."""
    budget = max(limit - _MARGIN, 1)
    if len(png) <= budget:
        return f"{stem}.png", png
    image = Image.open(io.BytesIO(png)).convert("RGB")
    while True:
        for fmt, quality in _FALLBACKS:
            data = encode_image(image, fmt, quality)  # type: ignore[arg-type]
            if len(data) <= budget:
                return f"{stem}.{'jpg' if fmt == 'jpeg' else fmt}", data
        if max(image.size) <= 64:
            return f"{stem}.webp", encode_image(image, "webp", 50)
        image = image.resize((max(1, image.width * 3 // 4), max(1, image.height * 3 // 4)), Image.LANCZOS)


def channel_upload_limit(requester_limit: int, server_limit: int) -> int:
    """The upload limit of a message the bot posts itself: the server's, never more than the requester's.

    An interaction's limit can include the requester's Nitro allowance, which a plain channel
    message does not get; the requester's is kept when smaller so both ways give the same file.
    """
    return min(requester_limit, server_limit)
