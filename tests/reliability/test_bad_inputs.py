"""The bad-input corpus (tests/badinputs.py) against the bot: each file processed or refused clearly, in bounded time.

Every case is uploaded to the real bot (``python -m bot``) as a /stylize content image: the
bot's own intake checks what Discord says, downloads from the fake CDN and decodes under the
pixel cap, then refuses with a message for a person or accepts, and an accepted job ends with
an image or a clear failure. A representative subset is also checked word for word, after
which the same worker is still alive and a normal job still works.
"""

from __future__ import annotations

import asyncio
import re

import aiohttp
import pytest
import pytest_asyncio

from bot.config import Config, parse_config
from bot.downloads import DownloadError, fetch
from tests.badinputs import CORPUS_MAX_PIXELS, BadInput, bad_input, bad_inputs
from tests.bot.harness import (
    DONE_TITLE,
    FINAL_TITLES,
    accepted_status,
    finals_for,
    job_prefix,
    refusal,
    stylize,
    title,
    wait_title,
)
from tests.fake_discord import CdnFault, FakeDiscord
from tests.reliability.support import FAILED_TITLE, running_bot

pytestmark = pytest.mark.asyncio(loop_scope="module")

# A guard against a hang, far above the milliseconds each case takes; it measures nothing.
CASE_TIMEOUT_S = 20.0
# Python's names for errors have no place in a message to a person.
CODE_WORDS = re.compile(r"Traceback|\b\w+(Error|Exception)\b|errno|PIL\b|\bNone\b")

CORPUS = bad_inputs()
# Uploads sent together to the bot by the corpus test.
BURST = 10


def refused_expected(case: BadInput) -> bool:
    """The corpus's rule: refuse exactly the cases with an error, and the attachment that is bigger than it says."""
    return case.error is not None or case.attachment_size != len(case.data)


def assert_human(message: str, filename: str) -> None:
    assert f"(`{filename}`)" in message, f"the message must name the file: {message!r}"
    assert message.rstrip().endswith("."), f"not a finished sentence: {message!r}"
    assert not CODE_WORDS.search(message), f"looks like code, not a message for a person: {message!r}"


@pytest.fixture(scope="module")
def config() -> Config:
    return parse_config(
        {
            "downloads": {
                "allowed_hosts": ["127.0.0.1"],
                "allowed_schemes": ["http"],
                "allow_explicit_port": True,
                "max_pixels": CORPUS_MAX_PIXELS,
                "timeout_s": 5.0,
            }
        }
    )


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def cdn():
    async with FakeDiscord() as fake, aiohttp.ClientSession() as session:
        yield fake, session


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
async def test_a_body_larger_than_its_declared_size_is_refused_by_the_downloader(cdn, config, streamed):
    fake, session = cdn
    case = bad_input("oversize_attachment")
    fault = CdnFault.no_content_length() if streamed else None
    payload = fake.add_attachment(case.data, case.filename, declared_size=case.declared_size, fault=fault)
    with pytest.raises(DownloadError, match="larger than Discord said"):
        async with asyncio.timeout(CASE_TIMEOUT_S):
            await fetch(session, payload["url"], declared_size=payload["size"], limits=config.downloads)


# --- end to end, through the real bot -------------------------------------------------------------------------

REFUSED_END_TO_END = {
    "empty": "is empty (0 bytes)",
    "html_as_png": "web page (HTML)",
    "zip_as_png": "ZIP archive",
    "png_truncated_half": "truncated or corrupt",
    "jpeg_truncated_scan_start": "truncated or corrupt",
    "png_bomb_30000": "decompression bomb",
    "webp_huge_header": "megapixels",
    "jpeg_scan_bomb": "more than 100 scans",
    "png_1x10000": "too thin to style",
    "eps": "of type `application/postscript`",
    "oversize_attachment": "larger than Discord said",
}
PROCESSED_END_TO_END = [
    "gif_animated_200_frames",
    "jpeg_cmyk",
    "png_16bit_grey",
    "png_palette_transparency",
    "jpeg_exif_rotated",
]
# Valid, but at the test presets' 32 px it would be 32x2: the engine explains why it cannot.
FAILED_END_TO_END = {"png_aspect_16": "short side needs at least 16 px"}


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world(tmp_path_factory, images_dir):
    overrides = {"limits": {"queue_size": 64}, "downloads": {"max_pixels": CORPUS_MAX_PIXELS}}
    async with running_bot(tmp_path_factory.mktemp("bad-inputs"), images_dir, overrides) as world:
        yield world


@pytest.mark.slow
async def test_each_corpus_file_sent_to_the_bot_is_refused_clearly_or_ends_in_an_image_or_a_clear_failure(world):
    fake = world.fake
    content_types = parse_config({}).downloads.content_types
    uploads = {
        case.name: fake.add_attachment(case.data, case.filename, case.content_type, declared_size=case.declared_size)
        for case in CORPUS
    }
    interactions = {}
    # In bursts, so the cases do not all download and decode at once on a small machine.
    for start in range(0, len(CORPUS), BURST):
        burst = CORPUS[start : start + BURST]
        handles = await asyncio.gather(*(
            stylize(fake, world.user(), content=uploads[case.name], preset="starry_night", quality="fast")
            for case in burst
        ))
        interactions.update(zip((case.name for case in burst), handles, strict=True))

    for case in CORPUS:
        interaction, upload = interactions[case.name], uploads[case.name]
        assert interaction.ack_type == 5 and interaction.rejections == [], case.name
        if refused_expected(case):
            message = await refusal(interaction, timeout=CASE_TIMEOUT_S)
            assert_human(message, case.filename)
            if case.content_type not in content_types or not case.data:
                assert fake.cdn.hits(upload) == 0, f"{case.name}: refused on what Discord says, yet downloaded"
            continue
        status = await accepted_status(interaction, timeout=CASE_TIMEOUT_S)
        await wait_title(fake, status, FINAL_TITLES, timeout=120)
        assert finals_for(fake, job_prefix(status)) == [status]
        if title(status) == DONE_TITLE:
            assert max(status.attachments[0].image().size) == 32, case.name
        else:
            assert title(status) == FAILED_TITLE, f"{case.name}: {status.text}"
            assert not CODE_WORDS.search(status.text), f"{case.name}: not a message for a person: {status.text}"
    assert await world.health() == (200, {"gateway": True, "pool": True})


@pytest.mark.slow
@pytest.mark.parametrize("name", ["png_bomb_10000", "jpeg_huge_header"])
async def test_dimensions_discord_reports_refuse_a_huge_image_before_downloading(world, name):
    fake = world.fake
    case = bad_input(name)
    assert case.size is not None
    width, height = case.size
    upload = fake.add_attachment(case.data, case.filename, case.content_type, width=width, height=height)
    message = await refusal(await stylize(fake, world.user(), content=upload, preset="starry_night", quality="fast"))
    assert "megapixels" in message, message
    assert fake.cdn.hits(upload) == 0


@pytest.mark.slow
async def test_bad_uploads_through_the_bot_are_refused_or_processed_and_it_keeps_serving(world):
    fake = world.fake
    workers_before = world.workers()
    assert len(workers_before) == 1

    disguised_eps = bad_input("eps")
    cases = [bad_input(name) for name in [*REFUSED_END_TO_END, *PROCESSED_END_TO_END, *FAILED_END_TO_END]]
    uploads = {
        case.name: fake.add_attachment(case.data, case.filename, case.content_type, declared_size=case.declared_size)
        for case in cases
    }
    # The same PostScript, claiming to be a PNG: it must be refused on its bytes, never reach Ghostscript.
    uploads["eps_as_png"] = fake.add_attachment(disguised_eps.data, "logo.png", "image/png")
    expected_refusals = {**REFUSED_END_TO_END, "eps_as_png": "PostScript/EPS format are not supported"}

    handles = await asyncio.gather(*(
        stylize(fake, world.user(), content=upload, preset="starry_night", quality="fast")
        for upload in uploads.values()
    ))
    interactions = dict(zip(uploads, handles, strict=True))

    for name, words in expected_refusals.items():
        message = await refusal(interactions[name], timeout=CASE_TIMEOUT_S)
        assert words in message, f"{name}: {message}"
        assert_human(message, uploads[name]["filename"])

    for name in PROCESSED_END_TO_END:
        status = await accepted_status(interactions[name], timeout=CASE_TIMEOUT_S)
        await wait_title(fake, status, FINAL_TITLES)
        assert title(status) == DONE_TITLE, f"{name}: {status.text}"
        assert finals_for(fake, job_prefix(status)) == [status]
        image = status.attachments[0].image()
        assert max(image.size) == 32, f"{name}: {image.size}"
        if name == "jpeg_exif_rotated":
            assert image.height > image.width, "the EXIF rotation must be applied before stylising"

    for name, words in FAILED_END_TO_END.items():
        status = await accepted_status(interactions[name], timeout=CASE_TIMEOUT_S)
        await wait_title(fake, status, FINAL_TITLES)
        assert title(status) == FAILED_TITLE and words in status.text, f"{name}: {status.text}"
        assert finals_for(fake, job_prefix(status)) == [status]

    for interaction in interactions.values():
        assert interaction.ack_type == 5 and interaction.rejections == []

    good = await accepted_status(
        await stylize(fake, world.user(), content=world.images.content, style=world.images.style, quality="fast")
    )
    await wait_title(fake, good, DONE_TITLE)
    assert world.workers() == workers_before, "a bad upload must never cost a worker"
    assert await world.health() == (200, {"gateway": True, "pool": True})
