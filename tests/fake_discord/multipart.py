"""Request bodies as discord.py sends them: JSON, or multipart with ``payload_json`` and ``files[n]`` parts."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class UploadedFile:
    """One ``files[n]`` part of a multipart request."""

    field: str
    filename: str
    content_type: str | None
    data: bytes

    @property
    def index(self) -> int | None:
        """``n`` of a ``files[n]`` field, which the payload's ``attachments[].id`` refers to."""
        if self.field.startswith("files[") and self.field.endswith("]"):
            try:
                return int(self.field[6:-1])
            except ValueError:
                return None
        return None


@dataclass
class RequestBody:
    json: object = None
    files: list[UploadedFile] = field(default_factory=list)
    raw: bytes = b""
    problem: str | None = None


async def read_body(request: web.Request) -> RequestBody:
    """Parse a request body; a malformed body is reported in ``problem`` rather than raised."""
    content_type = request.content_type
    if content_type == "multipart/form-data":
        return await _read_multipart(request)
    raw = await request.read()
    if not raw:
        return RequestBody()
    if content_type == "application/json":
        try:
            return RequestBody(json=json.loads(raw), raw=raw)
        except ValueError as exc:
            return RequestBody(raw=raw, problem=f"body is not valid JSON: {exc}")
    return RequestBody(raw=raw)


async def _read_multipart(request: web.Request) -> RequestBody:
    body = RequestBody()
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        data = await part.read()  # type: ignore[union-attr]
        name = part.name or ""
        if name == "payload_json":
            try:
                body.json = json.loads(data)
            except ValueError as exc:
                body.problem = f"payload_json is not valid JSON: {exc}"
        elif part.filename is not None:
            body.files.append(UploadedFile(name, part.filename, part.headers.get("Content-Type"), bytes(data)))
        else:
            body.problem = f"unexpected multipart field {name!r} without a filename"
    return body
