"""Batched jobs on the CPU: each member's image is the one it would get alone."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from nst_engine.batch import Batch, batch_key, stylize_batch
from nst_engine.errors import BrokenImage, Cancelled, InvalidRequest
from nst_engine.request import StyleResult
from nst_engine.transfer import stylize

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
    assert batch_key(tiny_request(size=1024, steps=60, multiscale=True), 64, 48) is None


def test_a_shape_multiple_lets_slightly_different_shapes_share_a_batch(tiny_request):
    assert batch_key(tiny_request(size=48), 64, 48) != batch_key(tiny_request(size=48), 64, 46)
    assert batch_key(tiny_request(size=48, shape_multiple=32), 64, 48) == batch_key(
        tiny_request(size=48, shape_multiple=32), 64, 46
    )
