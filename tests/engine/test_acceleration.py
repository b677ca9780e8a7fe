"""GPU speed-ups on the CPU: the fall-back to eager fp32 when one fails, and bf16 in fp32's company."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from nst_engine import acceleration
from nst_engine.acceleration import EAGER, Acceleration, Features
from nst_engine.transfer import stylize


@pytest.fixture(autouse=True)
def no_recorded_failures():
    acceleration.forget_failures()
    yield
    acceleration.forget_failures()


def test_cpu_defaults_to_eager():
    assert acceleration.default_for(torch.device("cpu")) == EAGER


def test_a_failing_graph_capture_falls_back_to_eager_fp32_with_one_warning(tiny_request, caplog):
    # CUDA graphs cannot be captured on a machine without CUDA: a real failure, forced.
    request = tiny_request(steps=6)
    eager = stylize(request, device="cpu", speedups=EAGER)
    progress = []
    with caplog.at_level(logging.WARNING, logger="nst_engine.acceleration"):
        graphed = stylize(
            request, device="cpu", speedups=Acceleration(graphs=True), on_progress=progress.append, progress_every=1
        )
        again = stylize(request, device="cpu", speedups=Acceleration(graphs=True))
    assert np.array_equal(graphed.image, eager.image)
    assert np.array_equal(again.image, eager.image)
    assert graphed.evaluations == 6
    assert graphed.losses == eager.losses
    assert progress[-1].iteration == 6
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "eagerly in fp32" in warnings[0].getMessage()


def test_a_failing_bf16_forward_falls_back(tiny_request, caplog, monkeypatch):
    def broken_autocast(*args, **kwargs):
        raise RuntimeError("bf16 is not supported by this device")

    monkeypatch.setattr(torch, "autocast", broken_autocast)
    request = tiny_request(steps=4)
    with caplog.at_level(logging.WARNING, logger="nst_engine.acceleration"):
        result = stylize(request, device="cpu", speedups=Acceleration(bf16=True))
    monkeypatch.undo()
    assert np.array_equal(result.image, stylize(request, device="cpu", speedups=EAGER).image)
    assert sum(record.levelno == logging.WARNING for record in caplog.records) == 1


def test_engine_errors_are_not_mistaken_for_a_speedup_failure(tiny_request, caplog):
    with caplog.at_level(logging.WARNING, logger="nst_engine.acceleration"):
        with pytest.raises(Exception, match="steps"):
            stylize(tiny_request(steps=0), device="cpu", speedups=Acceleration(graphs=True))
    assert not caplog.records


def test_bf16_features_come_out_in_fp32_close_to_fp32(caffe_vgg):
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    exact = Features(caffe_vgg, EAGER)(image, ("relu1_1", "relu3_1"))
    rounded = Features(caffe_vgg, Acceleration(bf16=True))(image, ("relu1_1", "relu3_1"))
    for name, value in rounded.items():
        assert value.dtype == torch.float32
        assert (value - exact[name]).norm() < 0.05 * exact[name].norm()
