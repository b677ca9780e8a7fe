"""Everything checked before a job is accepted, each failure with its own message.

Attachments are checked twice: on what Discord says about them (type, size, dimensions)
before a byte is downloaded, and on the real bytes afterwards (a full decode under the
pixel cap), because what Discord says is only what the uploader's client claimed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.config import QUALITIES, Config
from bot.downloads import DownloadError
from bot.formatting import format_bytes
from bot.jobs import SEED_MAX, STYLE_STRENGTH_RANGE, JobParams, new_seed
from bot.presets import PresetCatalogue
from nst_engine.errors import ImageError
from nst_engine.imageio import ImageInfo, check_dimensions, decode_with_info

if TYPE_CHECKING:
    import discord

    from bot.store import GuildSettings


class Rejection(Exception):
    """A request we will not run; ``str()`` is the message for the requester."""


@dataclass(frozen=True)
class AttachmentInfo:
    """What Discord tells us about an attachment, before downloading it."""

    filename: str
    url: str
    size: int
    content_type: str | None
    width: int | None
    height: int | None

    @classmethod
    def from_discord(cls, attachment: discord.Attachment) -> AttachmentInfo:
        return cls(
            filename=attachment.filename,
            url=attachment.url,
            size=attachment.size,
            content_type=attachment.content_type,
            width=attachment.width,
            height=attachment.height,
        )


@dataclass(frozen=True)
class StylizeOptions:
    """The /stylize options as the user gave them (``None`` = not given)."""

    preset: str | None = None
    quality: str | None = None
    size: int | None = None
    style_strength: float | None = None
    preserve_colors: bool | None = None
    seed: int | None = None
    has_style_attachment: bool = False


def _label(role: str, filename: str) -> str:
    return f"The {role} image (`{filename}`)"


def check_attachment(info: AttachmentInfo, role: str, config: Config) -> None:
    """Refuse an attachment from its metadata alone; ``role`` is "content" or "style"."""
    limits = config.downloads
    label = _label(role, info.filename)
    content_type = (info.content_type or "").split(";")[0].strip().lower()
    if content_type not in limits.content_types:
        kind = f"of type `{content_type}`" if content_type else "of an unknown type"
        raise Rejection(f"{label} is {kind}, not an image I can use. Please attach a PNG, JPEG, WebP, GIF or BMP.")
    if info.size <= 0:
        raise Rejection(f"{label} is empty (0 bytes). Please upload it again.")
    if info.size > limits.max_bytes:
        raise Rejection(
            f"{label} is too large: {format_bytes(info.size)}, and the limit is {format_bytes(limits.max_bytes)}."
        )
    if info.width and info.height:
        try:
            check_dimensions(ImageInfo("", info.width, info.height, 1), max_pixels=limits.max_pixels)
        except ImageError as exc:
            raise Rejection(f"{label}: {exc}") from None


def check_image(data: bytes, role: str, filename: str, config: Config) -> ImageInfo:
    """Decode the downloaded bytes fully under the pixel cap, reading their facts in the same pass.

    Slow, so run it in a thread.
    """
    try:
        return decode_with_info(data, max_pixels=config.downloads.max_pixels)[1]
    except ImageError as exc:
        raise image_refused(role, filename, exc) from None


def image_refused(role: str, filename: str, error: ImageError) -> Rejection:
    """The refusal for a downloaded attachment that is not an image we can use."""
    return Rejection(f"{_label(role, filename)}: {error}")


def download_failed(role: str, filename: str, error: DownloadError) -> Rejection:
    """The refusal for an attachment that could not be fetched."""
    return Rejection(f"I could not download the {role} image (`{filename}`): {error}.")


def resolve_params(
    options: StylizeOptions,
    config: Config,
    presets: PresetCatalogue,
    settings: GuildSettings | None = None,
) -> tuple[JobParams, list[str]]:
    """Turn the user's options into complete job parameters, plus notes about anything adjusted."""
    notes: list[str] = []
    if options.preset and options.has_style_attachment:
        raise Rejection("Choose either a style image or a preset, not both.")
    if options.preset:
        if presets.get(options.preset) is None:
            names = ", ".join(f"`{p.key}`" for p in presets) or "none"
            raise Rejection(f"There is no preset called `{options.preset}`. Available presets: {names}.")
    elif not options.has_style_attachment:
        raise Rejection("Attach a style image, or pick one of the preset paintings with the `preset` option.")

    quality = options.quality or config.quality.default
    if quality not in QUALITIES:
        raise Rejection(f"Unknown quality `{quality}`; choose fast, balanced or high.")
    preset = config.quality.preset(quality)

    size = preset.size
    if options.size is not None:
        limits = config.limits
        if not limits.min_size <= options.size <= limits.max_size:
            raise Rejection(f"The size must be between {limits.min_size} and {limits.max_size} pixels.")
        size = options.size

    strength = 1.0 if options.style_strength is None else options.style_strength
    low, high = STYLE_STRENGTH_RANGE
    if not low <= strength <= high:
        raise Rejection(f"The style strength must be between {low:g} and {high:g}.")

    seed = new_seed() if options.seed is None else options.seed
    if not 0 <= seed <= SEED_MAX:
        raise Rejection(f"The seed must be between 0 and {SEED_MAX}.")

    params = JobParams(
        quality=quality,
        size=size,
        steps=preset.steps,
        style_strength=strength,
        preserve_colors=bool(options.preserve_colors),
        seed=seed,
        preset=options.preset,
    )
    params, capped = cap_to_server(params, settings, config)
    return params, notes + capped


def cap_to_server(params: JobParams, settings: GuildSettings | None, config: Config) -> tuple[JobParams, list[str]]:
    """Lower ``params``' quality and size to the server's highest quality, with a note for each change.

    Shared by /stylize and the result buttons, so an old result's buttons cannot get round a
    limit the server's admins set later.
    """
    notes: list[str] = []
    if not (settings and settings.max_quality):
        return params, notes
    ceiling = config.quality.preset(settings.max_quality)
    if QUALITIES.index(params.quality) > QUALITIES.index(settings.max_quality):
        notes.append(f"This server allows quality up to **{settings.max_quality}**, so I used that.")
        preset = config.quality.preset(params.quality)
        size = ceiling.size if params.size == preset.size else params.size
        params = params.with_changes(quality=settings.max_quality, steps=ceiling.steps, size=size)
    if params.size > ceiling.size:
        notes.append(f"This server allows sizes up to **{ceiling.size} px**, so I used that.")
        params = params.with_changes(size=ceiling.size)
    return params, notes
