"""Button custom ids: what goes in comes out, and nothing else matches."""

from __future__ import annotations

import pytest

from bot.jobs import new_job_id
from bot.views import ACTIONS, JobButton, decode_custom_id, encode_custom_id, result_view, running_view


@pytest.mark.parametrize("action", ACTIONS)
def test_custom_ids_round_trip_and_fit_discords_limit(action):
    job_id = new_job_id()
    custom_id = encode_custom_id(action, job_id)
    assert len(custom_id) <= 100
    assert decode_custom_id(custom_id) == (action, job_id)


@pytest.mark.parametrize(
    "custom_id",
    [
        "",
        "nst:rerun:",
        "nst:explode:" + "a" * 32,
        "nst:rerun:" + "A" * 32,
        "nst:rerun:" + "a" * 31,
        "x" + "nst:rerun:" + "a" * 32,
    ],
)
def test_foreign_custom_ids_are_not_ours(custom_id):
    assert decode_custom_id(custom_id) is None


def test_encode_refuses_what_the_template_would_not_match():
    with pytest.raises(ValueError):
        encode_custom_id("explode", new_job_id())
    with pytest.raises(ValueError):
        encode_custom_id("rerun", "not-a-job-id")


def test_views_carry_the_job_in_every_button():
    job_id = new_job_id()
    running = [item.custom_id for item in running_view(job_id).children]
    assert running == [f"nst:cancel:{job_id}"]
    result = result_view(job_id, preserve_colors=True)
    assert [decode_custom_id(item.custom_id) for item in result.children] == [
        ("rerun", job_id),
        ("more", job_id),
        ("less", job_id),
        ("colors", job_id),
        ("adjust", job_id),
        ("higher", job_id),
        ("delete", job_id),
    ]
    assert all(isinstance(item, JobButton) for item in result.children)
    assert result.children[3].item.label == "Original colours"
    assert result_view(job_id, preserve_colors=False).children[3].item.label == "Preserve colours"
    assert [item.row for item in result.children[4:]] == [1, 1, 1], "a second row: Adjust…, Higher quality, Delete"
