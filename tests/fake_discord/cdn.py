"""The CDN: serves attachment bytes (uploaded by tests or by the bot) with per-attachment fault injection."""

from __future__ import annotations

import asyncio
import io
import mimetypes
import secrets
from dataclasses import dataclass
from urllib.parse import quote

from aiohttp import web


@dataclass(frozen=True)
class CdnFault:
    """How the CDN misbehaves for one attachment. Build with the class methods."""

    kind: str
    status: int = 200
    seconds: float = 0.0
    chunk: int = 0

    @classmethod
    def status_code(cls, status: int) -> CdnFault:
        """Answer with this HTTP status (e.g. 404, 500) and a small HTML error page."""
        return cls("status", status=status)

    @classmethod
    def hang(cls, seconds: float = 60.0) -> CdnFault:
        """Accept the connection but send nothing for ``seconds`` (a download timeout)."""
        return cls("hang", seconds=seconds)

    @classmethod
    def trickle(cls, chunk: int = 16, interval: float = 0.25) -> CdnFault:
        """Send ``chunk`` bytes every ``interval`` seconds (a slow server)."""
        return cls("trickle", seconds=interval, chunk=chunk)

    @classmethod
    def no_content_length(cls) -> CdnFault:
        """Stream the body chunked, without a Content-Length (the size is only known by reading it)."""
        return cls("chunked", chunk=4096)


@dataclass
class FakeAttachment:
    """A stored file: what tests upload for the bot to download, and what the bot uploads."""

    id: int
    filename: str
    data: bytes
    content_type: str | None
    url: str
    proxy_url: str
    declared_size: int | None = None
    width: int | None = None
    height: int | None = None
    description: str | None = None
    ephemeral: bool = False
    fault: CdnFault | None = None
    hits: int = 0

    @property
    def size(self) -> int:
        return len(self.data) if self.declared_size is None else self.declared_size

    def payload(self) -> dict:
        payload: dict = {
            "id": str(self.id),
            "filename": self.filename,
            "size": self.size,
            "url": self.url,
            "proxy_url": self.proxy_url,
            "content_type": self.content_type,
            "flags": 0,
        }
        if self.width is not None and self.height is not None:
            payload["width"] = self.width
            payload["height"] = self.height
        if self.description is not None:
            payload["description"] = self.description
        if self.ephemeral:
            payload["ephemeral"] = True
        return payload

    def image(self):
        """The file decoded with Pillow (for assertions on images the bot sent)."""
        from PIL import Image

        image = Image.open(io.BytesIO(self.data))
        image.load()
        return image


def sniff_content_type(data: bytes, filename: str) -> str | None:
    """The media type Discord would report: from magic bytes for common images, else from the extension."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return mimetypes.guess_type(filename)[0]


def image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height when Pillow can read the header, as Discord reports for images."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Exception:
        return None


class Cdn:
    """Attachment storage and the ``/attachments/...`` HTTP handler."""

    def __init__(self, closing: asyncio.Event) -> None:
        self.base_url = ""
        self._closing = closing
        self._files: dict[int, FakeAttachment] = {}

    def store(
        self,
        attachment_id: int,
        channel_id: int,
        data: bytes,
        filename: str,
        content_type: str | None,
        *,
        width: int | None = None,
        height: int | None = None,
        declared_size: int | None = None,
        description: str | None = None,
        fault: CdnFault | None = None,
        url: str | None = None,
    ) -> FakeAttachment:
        path = f"attachments/{channel_id}/{attachment_id}/{quote(filename)}"
        # Discord signs CDN URLs; a bot must keep the query string when it downloads.
        signature = f"?ex={secrets.token_hex(4)}&is={secrets.token_hex(4)}&hm={secrets.token_hex(16)}"
        attachment = FakeAttachment(
            id=attachment_id,
            filename=filename,
            data=data,
            content_type=content_type,
            url=url or f"{self.base_url}/{path}{signature}",
            proxy_url=f"{self.base_url}/proxy/{path}{signature}",
            declared_size=declared_size,
            width=width,
            height=height,
            description=description,
            fault=fault,
        )
        self._files[attachment_id] = attachment
        return attachment

    def get(self, attachment: int | str | dict | FakeAttachment) -> FakeAttachment:
        """The stored attachment for an id, a payload dict or the object itself."""
        if isinstance(attachment, FakeAttachment):
            return attachment
        key = int(attachment["id"]) if isinstance(attachment, dict) else int(attachment)
        return self._files[key]

    def set_fault(self, attachment: int | str | dict | FakeAttachment, fault: CdnFault | None) -> None:
        self.get(attachment).fault = fault

    def hits(self, attachment: int | str | dict | FakeAttachment) -> int:
        """How many times the attachment was requested (to prove a download did or did not happen)."""
        return self.get(attachment).hits

    async def serve(self, request: web.Request) -> web.StreamResponse:
        attachment = self._files.get(int(request.match_info["attachment_id"]))
        if attachment is None or attachment.filename != request.match_info["filename"]:
            return web.Response(status=404, text="<html><body>404 Not Found</body></html>", content_type="text/html")
        attachment.hits += 1
        fault = attachment.fault
        if fault is None:
            return web.Response(body=attachment.data, content_type=attachment.content_type or "application/octet-stream")
        if fault.kind == "status":
            page = f"<html><head><title>{fault.status}</title></head><body>CDN error {fault.status}</body></html>"
            return web.Response(status=fault.status, text=page, content_type="text/html")
        if fault.kind == "hang":
            await self._wait(fault.seconds)
            return web.Response(body=attachment.data, content_type=attachment.content_type or "application/octet-stream")
        return await self._stream(request, attachment, fault)

    async def _stream(self, request: web.Request, attachment: FakeAttachment, fault: CdnFault) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_type = attachment.content_type or "application/octet-stream"
        if fault.kind == "chunked":
            response.enable_chunked_encoding()
        else:
            response.content_length = len(attachment.data)
        await response.prepare(request)
        data = attachment.data
        try:
            for start in range(0, len(data), fault.chunk):
                await response.write(data[start : start + fault.chunk])
                if fault.kind == "trickle" and start + fault.chunk < len(data) and await self._wait(fault.seconds):
                    break
            await response.write_eof()
        except ConnectionResetError:
            # The downloader gave up (timeout or byte cap): exactly what a slow-server test provokes.
            pass
        return response

    async def _wait(self, seconds: float) -> bool:
        """Sleep for a simulated slow server, returning early (True) when the fake shuts down."""
        try:
            await asyncio.wait_for(self._closing.wait(), timeout=seconds)
        except asyncio.TimeoutError:
            return False
        return True
