"""Typed errors of the engine. Every message is written for a person, not a developer."""

from __future__ import annotations


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""


class ImageError(EngineError, ValueError):
    """An input image that cannot be used."""


class EmptyImage(ImageError):
    """Zero bytes."""


class NotAnImage(ImageError):
    """Bytes that are no image at all (text, HTML, an archive...)."""


class UnsupportedFormat(ImageError):
    """A real image in a format we do not accept (TIFF, PSD, EPS, SVG, ICO...)."""


class ImageTooLarge(ImageError):
    """More pixels than allowed; raised before the pixels are decoded."""


class BrokenImage(ImageError):
    """A known format whose data is truncated or corrupt."""


class BadDimensions(ImageError):
    """An image whose shape cannot be styled (far too thin or too flat)."""


class WeightsUnavailable(EngineError):
    """The VGG19 weights could not be loaded (offline, missing file, wrong layout)."""


class OutOfMemory(EngineError):
    """The device ran out of memory for this job's size."""


class Cancelled(EngineError):
    """The job was cancelled through its cancel token."""


class InvalidRequest(EngineError, ValueError):
    """A request whose settings make no sense (unknown layer, negative size...)."""
