"""Attachment downloads: allowed hosts only, byte caps while streaming, time limits, no redirects."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from bot.config import parse_config
from bot.downloads import DownloadError, check_url, fetch

BODY = b"x" * 5000


@pytest.fixture
async def server():
    """A local server with one route per behaviour a CDN (or an attacker) might show."""
    release = asyncio.Event()

    async def ok(request):
        return web.Response(body=BODY, content_type="image/png")

    async def redirect(request):
        raise web.HTTPFound("http://example.com/elsewhere.png")

    async def missing(request):
        return web.Response(status=404)

    async def broken(request):
        return web.Response(status=500)

    async def lying_length(request):
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(100):
            await response.write(b"y" * 1000)
        await response.write_eof()
        return response

    async def trickle(request):
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"z")
        await release.wait()
        return response

    app = web.Application()
    for path, handler in [
        ("/ok.png", ok),
        ("/redirect.png", redirect),
        ("/missing.png", missing),
        ("/broken.png", broken),
        ("/chunked.png", lying_length),
        ("/trickle.png", trickle),
    ]:
        app.router.add_get(path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with aiohttp.ClientSession() as session:
        yield session, f"http://127.0.0.1:{port}"
    release.set()
    await runner.cleanup()


LIMITS = parse_config(
    {
        "downloads": {
            "allowed_hosts": ["127.0.0.1"],
            "allowed_schemes": ["http"],
            "allow_explicit_port": True,
            "max_bytes": 50_000,
            "timeout_s": 0.5,
        }
    }
).downloads


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://cdn.discordapp.com:8443/attachments/1/2/a.png", "names port 8443"),
        ("https://user:secret@cdn.discordapp.com/attachments/1/2/a.png", "user name or password"),
        ("https://user@cdn.discordapp.com/attachments/1/2/a.png", "user name or password"),
        ("https://[::1/a.png", "not a valid URL"),
        ("https://cdn.discordapp.com:99999/a.png", "not a valid URL"),
        ("https://cdn.discordapp.com:port/a.png", "not a valid URL"),
    ],
)
def test_a_cdn_url_with_a_port_user_info_or_bad_syntax_is_refused_with_the_download_error(url, reason):
    with pytest.raises(DownloadError, match=reason):
        check_url(url, parse_config({}).downloads)


def test_the_default_port_written_out_is_still_the_default_port():
    check_url("https://cdn.discordapp.com:443/attachments/1/2/a.png", parse_config({}).downloads)


async def test_a_normal_download(server):
    session, base = server
    assert await fetch(session, f"{base}/ok.png", declared_size=len(BODY), limits=LIMITS) == BODY


def test_only_allowed_hosts_and_schemes():
    default = parse_config({}).downloads
    check_url("https://cdn.discordapp.com/attachments/1/2/a.png", default)
    check_url("https://MEDIA.discordapp.net/attachments/1/2/a.png", default)
    for url in [
        "http://cdn.discordapp.com/attachments/1/2/a.png",
        "https://cdn.discordapp.com.evil.example/a.png",
        "https://evil.example/cdn.discordapp.com/a.png",
        "file:///etc/passwd",
        "https://user@169.254.169.254/latest",
    ]:
        with pytest.raises(DownloadError, match="not hosted on Discord's CDN"):
            check_url(url, default)


@pytest.mark.parametrize(
    ("path", "declared", "words"),
    [
        ("/redirect.png", None, "redirected"),
        ("/missing.png", None, "HTTP 404"),
        ("/broken.png", None, "HTTP 500"),
        ("/ok.png", 1000, "larger than Discord said"),
        ("/chunked.png", None, "larger than the 48.8 KiB limit"),
        ("/trickle.png", None, "took longer than 0.5 s"),
    ],
)
async def test_each_failure_has_a_reason(server, path, declared, words):
    session, base = server
    with pytest.raises(DownloadError, match=words):
        await fetch(session, base + path, declared_size=declared, limits=LIMITS)


async def test_a_closed_port_is_a_download_error():
    async with aiohttp.ClientSession() as session:
        with pytest.raises(DownloadError, match="the download failed"):
            await fetch(session, "http://127.0.0.1:9/a.png", declared_size=None, limits=LIMITS)
