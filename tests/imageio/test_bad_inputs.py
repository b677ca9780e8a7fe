"""Every case of the bad-input corpus through probe_image and decode_image."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import re

import pytest
from PIL import Image

from nst_engine import errors
from nst_engine.imageio import ACCEPTED_FORMATS, decode_image, probe_image
from tests.badinputs import CORPUS_MAX_PIXELS, BadInput, bad_input, bad_inputs

CASES = bad_inputs()


def assert_human(error: Exception) -> None:
    """A message a person can read: a capitalised sentence, no Python internals."""
    message = str(error)
    assert message[:1].isupper(), message
    assert message.endswith("."), message
    assert len(message) >= 30, message
    for internal in ("<_io", "Traceback", "PIL", "errno"):
        assert internal not in message, message
    assert not re.search(r"\b0x[0-9a-f]", message), message


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_probe(case: BadInput) -> None:
    if case.probe_error:
        with pytest.raises(case.probe_error) as caught:
            probe_image(case.data)
        assert type(caught.value) is case.probe_error
        assert_human(caught.value)
        return
    info = probe_image(case.data)
    assert info.format in ACCEPTED_FORMATS
    # The header gives the stored size; EXIF rotation may swap it on decoding.
    assert sorted((info.width, info.height)) == sorted(case.size)
    assert info.frames == case.frames


@pytest.mark.parametrize("max_pixels", [1_000_000, CORPUS_MAX_PIXELS, 89_000_000])
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_decode(case: BadInput, max_pixels: int) -> None:
    if case.error:
        with pytest.raises(case.error) as caught:
            decode_image(case.data, max_pixels=max_pixels)
        assert type(caught.value) is case.error
        assert_human(caught.value)
        return
    image = decode_image(case.data, max_pixels=max_pixels)
    assert image.mode == "RGB"
    assert image.size == case.size
    if case.check:
        case.check(image)


def test_no_other_pillow_plugin_is_ever_tried(monkeypatch: pytest.MonkeyPatch) -> None:
    """TIFF, PSD, EPS (Ghostscript), ICO... are recognised by their bytes, never opened by Pillow."""

    def refuse(*args: object, **kwargs: object) -> Image.Image:
        raise AssertionError("a non-accepted Pillow plugin was asked to open the data")

    Image.init()
    for fmt, (_factory, accept) in list(Image.OPEN.items()):
        if fmt not in ACCEPTED_FORMATS:
            monkeypatch.setitem(Image.OPEN, fmt, (refuse, accept))
    with pytest.raises(AssertionError):
        Image.open(io.BytesIO(bad_input("eps").data))
    for case in CASES:
        with contextlib.suppress(errors.ImageError):
            decode_image(case.data, max_pixels=CORPUS_MAX_PIXELS)


def test_corpus_covers_every_image_error() -> None:
    expected = {cls for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, errors.ImageError)}
    expected.discard(errors.ImageError)
    assert {case.error for case in CASES} - {None} == expected


def test_corpus_is_deterministic_and_uniquely_named() -> None:
    again = bad_inputs.__wrapped__()
    assert [case.name for case in again] == [case.name for case in CASES]
    assert len({case.name for case in CASES}) == len(CASES)
    for first, second in zip(CASES, again, strict=True):
        assert dataclasses.replace(first, check=None) == dataclasses.replace(second, check=None)


def test_corpus_cases_carry_attachment_metadata() -> None:
    for case in CASES:
        assert case.filename
        assert "/" in case.content_type
    oversize = bad_input("oversize_attachment")
    assert oversize.attachment_size < len(oversize.data)
