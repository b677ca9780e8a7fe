"""The Adjust dialog's values and the Higher quality step: checked like /stylize's options, each with its message."""

from __future__ import annotations

import pytest

from bot.config import Config, LimitsConfig
from bot.jobs import JobParams
from bot.remix import adjusted, higher_quality
from bot.validation import Rejection

CONFIG = Config(limits=LimitsConfig(min_size=64, max_size=1024))
PARAMS = JobParams(quality="fast", size=384, steps=200, style_strength=1.0, seed=5)


def test_the_dialogs_values_replace_strength_seed_and_size():
    changed = adjusted(PARAMS, "2.5", "42", "512", CONFIG)
    assert (changed.style_strength, changed.seed, changed.size) == (2.5, 42, 512)
    assert (changed.quality, changed.steps) == ("fast", 200)
    assert adjusted(PARAMS, "×0,5", "", "256px", CONFIG).style_strength == 0.5
    assert len({adjusted(PARAMS, "1", "", "256", CONFIG).seed for _ in range(5)}) > 1, "an empty seed draws new ones"


@pytest.mark.parametrize(
    ("strength", "seed", "size", "message"),
    [
        ("strong", "1", "256", "Style strength must be a number from 0.1 to 10"),
        ("11", "1", "256", "Style strength must be from 0.1 to 10"),
        ("1", "-3", "256", "The seed must be from 0 to 2147483647"),
        ("1", "lucky", "256", "The seed must be a whole number"),
        ("1", "1", "4000", "The size must be from 64 to 1024 pixels"),
        ("1", "1", "big", "The size must be a whole number of pixels from 64 to 1024"),
    ],
)
def test_each_bad_value_is_refused_naming_its_field(strength, seed, size, message):
    with pytest.raises(Rejection, match=message):
        adjusted(PARAMS, strength, seed, size, CONFIG)


def test_higher_quality_steps_up_to_the_top_or_the_servers_ceiling():
    balanced = higher_quality(PARAMS, CONFIG, None)
    preset = CONFIG.quality.preset("balanced")
    assert (balanced.quality, balanced.steps, balanced.size) == ("balanced", preset.steps, max(384, preset.size))
    assert higher_quality(balanced, CONFIG, None).quality == "high"
    with pytest.raises(Rejection, match="already at the highest quality there is"):
        higher_quality(higher_quality(balanced, CONFIG, None), CONFIG, None)
    with pytest.raises(Rejection, match="highest quality this server allows"):
        higher_quality(balanced, CONFIG, "balanced")
