"""Fetching attachments from Discord's CDN, and nothing else.

The URL must be well formed, use an allowed scheme and host on the scheme's default port
(unless ``downloads.allow_explicit_port``, for a local test server), and carry no user
name or password; redirects are refused (a redirect could
point anywhere); the byte cap is enforced while streaming, so neither a lying
Content-Length nor a body larger than the attachment's declared size gets through; and
the whole download has a time limit, so a server that trickles bytes cannot hold a job.
"""

from __future__ import annotations

import asyncio

import aiohttp
import yarl

from bot.config import DownloadConfig
from bot.formatting import format_bytes

_CHUNK = 64 * 1024
_DEFAULT_PORTS = {"https": 443, "http": 80}


class DownloadError(Exception):
    """A download that failed; ``str()`` is the reason, worded for the requester."""


def check_url(url: str, limits: DownloadConfig) -> yarl.URL:
    """Parse ``url`` and make sure it points at an allowed host over an allowed scheme and port."""
    try:
        parsed = yarl.URL(url)
        port = parsed.explicit_port
    except (ValueError, TypeError):
        raise DownloadError("its address is not a valid URL") from None
    if parsed.scheme not in limits.allowed_schemes or (parsed.host or "").lower() not in limits.allowed_hosts:
        raise DownloadError("it is not hosted on Discord's CDN, so I will not fetch it")
    if parsed.user is not None or parsed.password is not None:
        raise DownloadError("its address carries a user name or password, which Discord's CDN never uses")
    if port is not None and port != _DEFAULT_PORTS.get(parsed.scheme) and not limits.allow_explicit_port:
        raise DownloadError(f"its address names port {port}, which Discord's CDN never uses")
    return parsed


async def fetch(
    session: aiohttp.ClientSession, url: str, *, declared_size: int | None, limits: DownloadConfig
) -> bytes:
    """Download ``url`` within ``limits``; raise :class:`DownloadError` with a readable reason."""
    parsed = check_url(url, limits)
    cap = limits.max_bytes
    if declared_size is not None and declared_size < cap:
        cap = declared_size
    try:
        async with asyncio.timeout(limits.timeout_s):
            async with session.get(parsed, allow_redirects=False) as response:
                if 300 <= response.status < 400:
                    raise DownloadError("Discord's CDN redirected the download elsewhere, which I do not follow")
                if response.status != 200:
                    raise DownloadError(f"Discord's CDN answered with HTTP {response.status}")
                if response.content_length is not None and response.content_length > cap:
                    raise DownloadError(_too_big(cap, declared_size, limits))
                body = bytearray()
                async for chunk in response.content.iter_chunked(_CHUNK):
                    body += chunk
                    if len(body) > cap:
                        raise DownloadError(_too_big(cap, declared_size, limits))
                return bytes(body)
    except TimeoutError:
        raise DownloadError(f"the download took longer than {limits.timeout_s:g} s") from None
    except aiohttp.ClientError as exc:
        raise DownloadError(f"the download failed ({type(exc).__name__})") from None


def _too_big(cap: int, declared_size: int | None, limits: DownloadConfig) -> str:
    if declared_size is not None and cap == declared_size and declared_size < limits.max_bytes:
        return "the file is larger than Discord said it was, so I stopped downloading it"
    return f"the file is larger than the {format_bytes(limits.max_bytes)} limit"
