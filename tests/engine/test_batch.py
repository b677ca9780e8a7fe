"""Batched jobs on the CPU: each member's image is the one it would get alone."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from nst_engine import presets
from nst_engine.batch import Batch, Batches, batch_key, stylize_batch
from nst_engine.errors import BrokenImage, Cancelled, InvalidRequest
from nst_engine.pool.pool import _shape
from nst_engine.request import StyleRequest, StyleResult
from nst_engine.transfer import plan_request, stylize

SIZE = 32
STEPS = 6


def assert_same_image(batched: StyleResult, alone: StyleResult) -> None:
    assert np.array_equal(batched.image, alone.image)
    assert batched.losses == alone.losses
    assert batched.evaluations == alone.evaluations


@pytest.fixture(autouse=True)
def batch_independent_convolutions():
    """oneDNN picks its convolution algorithm by batch size, so a batched image's features differ
    from its features alone in the 7th digit, which L-BFGS (no line search) amplifies within a few
    steps. torch's own CPU convolution computes each image of a batch alike: with it, batched and
    alone must agree exactly."""
    previous = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = previous


@pytest.fixture
def requests(tiny_request):
    """Three different jobs of one shape: other seeds, inits, weights and optimisers."""
    return [
        tiny_request(size=SIZE, steps=STEPS, seed=1),
        tiny_request(size=SIZE, steps=STEPS, seed=2, init="noise", style_weight=3.0),
        tiny_request(size=SIZE, steps=STEPS + 2, seed=3, optimizer="adam", tv_weight=0.5),
    ]


def test_each_batched_job_gets_the_image_it_gets_alone(requests):
    results = stylize_batch(requests, device="cpu")
    for request, result in zip(requests, results):
        assert_same_image(result, stylize(request, device="cpu"))


def test_cancelling_one_member_leaves_the_others_unchanged(requests):
    token = threading.Event()

    def cancel_after_two(progress) -> None:
        if progress.iteration == 2:
            token.set()

    batch = Batch(batch_key(requests[0], 64, 48), "cpu")
    for index, request in enumerate(requests):
        if index == 1:
            batch.join(request, on_progress=cancel_after_two, progress_every=1, cancel=token, tag=index)
        else:
            batch.join(request, tag=index)
    outcomes = {}
    while len(batch):
        for outcome in batch.step():
            outcomes[outcome.member.tag] = outcome
    assert isinstance(outcomes[1].error, Cancelled)
    assert outcomes[1].member.run.evaluations == 2
    for index in (0, 2):
        assert_same_image(outcomes[index].result, stylize(requests[index], device="cpu"))


def test_a_failing_member_fails_only_itself(requests, tiny_request):
    def broken_progress(progress) -> None:
        raise RuntimeError("the progress consumer broke")

    batch = Batch(batch_key(requests[0], 64, 48), "cpu")
    with pytest.raises(BrokenImage):
        batch.join(tiny_request(size=SIZE, content=b"\x89PNG\r\n\x1a\n broken"), tag="broken")
    batch.join(requests[0], tag=0)
    batch.join(requests[1], on_progress=broken_progress, progress_every=3, tag=1)
    outcomes = {}
    while len(batch):
        for outcome in batch.step():
            outcomes[outcome.member.tag] = outcome
    assert "broke" in str(outcomes[1].error) and outcomes[1].member.run.evaluations == 3
    assert_same_image(outcomes[0].result, stylize(requests[0], device="cpu"))


def test_a_member_joining_between_steps_gets_its_image_alone(requests):
    batch = Batch(batch_key(requests[0], 64, 48), "cpu")
    batch.join(requests[0], tag=0)
    outcomes = {}
    for step in range(STEPS + 3):
        if step == 3:
            batch.join(requests[1], tag=1)
        for outcome in batch.step():
            outcomes[outcome.member.tag] = outcome
    for index in (0, 1):
        assert_same_image(outcomes[index].result, stylize(requests[index], device="cpu"))


def test_a_job_of_another_shape_is_refused(tiny_request):
    batch = Batch(batch_key(tiny_request(size=SIZE), 64, 48), "cpu")
    with pytest.raises(InvalidRequest, match="batch"):
        batch.join(tiny_request(size=40))
    # A coarse-to-fine job joins the batch of its first scale's shape.
    assert batch_key(tiny_request(size=1024, steps=60, multiscale=True), 64, 48)[:2] == (256, 192)


def test_a_shape_multiple_lets_slightly_different_shapes_share_a_batch(tiny_request):
    assert batch_key(tiny_request(size=48), 64, 48) != batch_key(tiny_request(size=48), 64, 46)
    assert batch_key(tiny_request(size=48, shape_multiple=32), 64, 48) == batch_key(
        tiny_request(size=48, shape_multiple=32), 64, 46
    )


@pytest.fixture
def ladders(tiny_request, monkeypatch):
    """Coarse-to-fine jobs at 32 -> 64 px beside single-scale jobs at each of those sizes."""
    monkeypatch.setattr(presets, "MULTISCALE_COARSEST", 32)
    return {
        "lbfgs": tiny_request(size=64, steps=20, seed=1, multiscale=True),
        "adam": tiny_request(size=64, steps=22, seed=2, multiscale=True, optimizer="adam", init="noise"),
        "fine": tiny_request(size=64, steps=24, seed=3, multiscale=False),
        "coarse": tiny_request(size=32, steps=4, seed=4, multiscale=False),
    }


def run_batches(jobs: dict[str, StyleRequest], **options: dict) -> tuple[dict, list[dict]]:
    """Every job in one Batches until all are over: outcomes by name, and the batch sizes after each step."""
    batches = Batches("cpu")
    for name, request in jobs.items():
        batches.join(request, tag=name, **options.get(name, {}))
    outcomes: dict = {}
    sizes: list[dict] = []
    while len(batches):
        batches.step(lambda outcome: outcomes.__setitem__(outcome.member.tag, outcome))
        sizes.append({key[:2]: len(batch) for key, batch in batches.batches.items()})
    return outcomes, sizes


def test_coarse_to_fine_jobs_share_a_batch_at_each_scale_and_get_their_image_alone(ladders):
    assert plan_request(ladders["lbfgs"]).scales == ((32, 10), (64, 10))
    seen = []
    outcomes, sizes = run_batches(ladders, lbfgs={"on_progress": seen.append, "progress_every": 1})
    assert sizes[0] == {(32, 24): 3, (64, 48): 1}
    assert {(64, 48): 3} in sizes  # both ladders moved on into the batch the fine job runs in
    for name, request in ladders.items():
        assert_same_image(outcomes[name].result, stylize(request, device="cpu"))
    # Progress counts evaluations over the whole ladder, as the job alone reports them.
    assert [(p.iteration, p.total) for p in seen] == [(i, 20) for i in range(1, 21)]


def test_a_coarse_to_fine_member_cancelled_or_failing_leaves_the_others_unchanged(ladders):
    token = threading.Event()

    def cancel_at_the_second_scale(progress) -> None:
        if progress.iteration == 14:
            token.set()

    def broken_progress(progress) -> None:
        raise RuntimeError("the progress consumer broke")

    outcomes, _ = run_batches(
        ladders,
        adam={"on_progress": cancel_at_the_second_scale, "progress_every": 1, "cancel": token},
        coarse={"on_progress": broken_progress, "progress_every": 2},
    )
    assert isinstance(outcomes["adam"].error, Cancelled) and outcomes["adam"].member.run.evaluations == 14
    assert "broke" in str(outcomes["coarse"].error)
    for name in ("lbfgs", "fine"):
        assert_same_image(outcomes[name].result, stylize(ladders[name], device="cpu"))


@pytest.mark.parametrize("settings", [{"quality": "fast"}, {"quality": "balanced", "shape_multiple": 32}, {"size": 200}])
def test_the_pool_places_a_job_by_the_key_of_the_batch_it_joins_first(tiny_request, settings):
    request = tiny_request(**{"size": None, "steps": None, **settings})
    assert _shape(request, 0.75) == batch_key(request, 4000, 3000)
