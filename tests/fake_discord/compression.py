"""Transport compression for gateway messages, matching what discord.py asks for in the ``compress`` query."""

from __future__ import annotations

import zlib
from collections.abc import Callable

Compressor = Callable[[bytes], bytes]


def make_compressor(kind: str | None) -> Compressor | None:
    """A stateful per-connection compressor, None for plain text frames; ValueError for an unknown kind."""
    if kind is None:
        return None
    if kind == "zlib-stream":
        # One zlib stream per connection; every message ends with a sync flush (00 00 ff ff), which the client
        # uses to know a message is complete.
        stream = zlib.compressobj()
        return lambda data: stream.compress(data) + stream.flush(zlib.Z_SYNC_FLUSH)
    if kind == "zstd-stream":
        return _zstd_compressor()
    raise ValueError(f"unsupported gateway compression {kind!r}")


def _zstd_compressor() -> Compressor:
    # Each frame is flushed so it decodes on its own, as discord.py expects one message per frame.
    try:
        import zstandard
    except ImportError:
        pass
    else:
        stream = zstandard.ZstdCompressor().compressobj()
        return lambda data: stream.compress(data) + stream.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
    try:
        from compression import zstd  # type: ignore[import-not-found]
    except ImportError:
        raise ValueError("zstd-stream needs the zstandard package (or Python 3.14's compression.zstd)") from None
    compressor = zstd.ZstdCompressor()
    return lambda data: compressor.compress(data, zstd.ZstdCompressor.FLUSH_BLOCK)
