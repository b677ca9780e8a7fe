"""Checks before a job is accepted: attachment metadata, decoded bytes, options."""

from __future__ import annotations

import pytest

from bot.commands.buttons import derive_params
from bot.config import Config, parse_config
from bot.jobs import JobParams
from bot.presets import BUNDLED, PresetCatalogue
from bot.store import GuildSettings
from bot.validation import (
    AttachmentInfo,
    Rejection,
    StylizeOptions,
    cap_to_server,
    check_attachment,
    check_image,
    resolve_params,
)
from tests.badinputs import CORPUS_MAX_PIXELS, bad_inputs

CONFIG = parse_config({"downloads": {"max_bytes": 1_000_000, "max_pixels": CORPUS_MAX_PIXELS}})
PRESETS = PresetCatalogue(["starry_night", "the_scream"], {})


def _info(**changes) -> AttachmentInfo:
    values = {
        "filename": "cat.png",
        "url": "https://cdn.discordapp.com/attachments/1/2/cat.png",
        "size": 50_000,
        "content_type": "image/png",
        "width": 640,
        "height": 480,
    }
    values.update(changes)
    return AttachmentInfo(**values)


def test_a_plain_image_attachment_passes():
    check_attachment(_info(), "content", CONFIG)
    check_attachment(_info(content_type="image/jpeg; charset=binary", width=None, height=None), "style", CONFIG)


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"content_type": "text/html"}, "is of type `text/html`, not an image"),
        ({"content_type": None}, "is of an unknown type"),
        ({"content_type": "image/tiff"}, "is of type `image/tiff`"),
        ({"size": 0}, "is empty"),
        ({"size": 5_000_000}, "is too large: 4.8 MiB, and the limit is 976.6 KiB"),
        ({"width": 30000, "height": 30000}, "30000x30000 pixels"),
        ({"width": 1, "height": 10000}, "too thin"),
    ],
)
def test_each_metadata_problem_has_its_own_message(changes, words):
    with pytest.raises(Rejection) as caught:
        check_attachment(_info(**changes), "content", CONFIG)
    assert str(caught.value).startswith("The content image (`cat.png`)")
    assert words in str(caught.value)


@pytest.mark.parametrize("case", bad_inputs(), ids=lambda case: case.name)
def test_downloaded_bytes_are_refused_exactly_when_they_cannot_be_used(case):
    if case.error is None:
        info = check_image(case.data, "style", case.filename, CONFIG)
        assert info.width > 0
    else:
        with pytest.raises(Rejection) as caught:
            check_image(case.data, "style", case.filename, CONFIG)
        assert str(caught.value).startswith(f"The style image (`{case.filename}`): ")


def test_options_resolve_to_complete_parameters():
    params, notes = resolve_params(StylizeOptions(has_style_attachment=True, seed=9), CONFIG, PRESETS)
    balanced = CONFIG.quality.preset("balanced")
    assert (params.quality, params.size, params.steps, params.seed) == ("balanced", balanced.size, balanced.steps, 9)
    assert (params.style_strength, params.preserve_colors, params.preset, notes) == (1.0, False, None, [])

    params, _ = resolve_params(
        StylizeOptions(preset="the_scream", quality="fast", size=200, style_strength=2.5, preserve_colors=True),
        CONFIG,
        PRESETS,
    )
    assert (params.quality, params.size, params.steps) == ("fast", 200, CONFIG.quality.preset("fast").steps)
    assert (params.style_strength, params.preserve_colors, params.preset) == (2.5, True, "the_scream")
    assert 0 <= params.seed < 2**31


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (StylizeOptions(), "Attach a style image, or pick one of the preset paintings"),
        (StylizeOptions(preset="starry_night", has_style_attachment=True), "either a style image or a preset"),
        (StylizeOptions(preset="shipwreck"), "no preset called `shipwreck`"),
        (StylizeOptions(has_style_attachment=True, size=10), "size must be between 64 and 1024"),
        (StylizeOptions(has_style_attachment=True, size=5000), "size must be between 64 and 1024"),
        (StylizeOptions(has_style_attachment=True, style_strength=50.0), "style strength must be between 0.1 and 10"),
        (StylizeOptions(has_style_attachment=True, seed=-1), "seed must be between 0 and"),
        (StylizeOptions(has_style_attachment=True, quality="ultra"), "Unknown quality"),
    ],
)
def test_bad_options_are_refused_with_a_reason(options, words):
    with pytest.raises(Rejection, match=words):
        resolve_params(options, CONFIG, PRESETS)


def test_server_max_quality_caps_quality_and_size_with_a_note():
    settings = GuildSettings(1, [], "fast")
    params, notes = resolve_params(StylizeOptions(preset="starry_night", quality="high"), CONFIG, PRESETS, settings)
    assert params.quality == "fast" and params.size == CONFIG.quality.preset("fast").size
    assert "up to **fast**" in notes[0]
    params, notes = resolve_params(StylizeOptions(preset="starry_night", size=1000), CONFIG, PRESETS, settings)
    assert params.size == CONFIG.quality.preset("fast").size
    assert any("sizes up to" in note for note in notes)


def test_a_result_button_on_an_old_high_job_is_capped_by_the_server_limit_set_since():
    high = CONFIG.quality.preset("high")
    old_job = JobParams(quality="high", size=high.size, steps=high.steps, seed=3)
    fast = CONFIG.quality.preset("fast")
    params, notes = cap_to_server(derive_params(old_job, "rerun"), GuildSettings(1, [], "fast"), CONFIG)
    assert (params.quality, params.size, params.steps) == ("fast", fast.size, fast.steps)
    assert len(notes) == 1 and "up to **fast**" in notes[0]
    unlimited, notes = cap_to_server(old_job, GuildSettings(1, [], None), CONFIG)
    assert unlimited == old_job and notes == []


def test_bundled_presets_exist_and_search_finds_them():
    for preset in BUNDLED.values():
        assert preset.path.is_file() and preset.data[:2] == b"\xff\xd8"
    catalogue = PresetCatalogue(list(BUNDLED), {})
    assert [p.key for p in catalogue.search("scream")] == ["the_scream"]
    assert [p.key for p in catalogue.search("van gogh")] == ["starry_night"]
    assert len(catalogue.search("")) == len(BUNDLED)
    assert Config().presets.enabled == list(BUNDLED)
