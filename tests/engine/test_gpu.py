"""CUDA-only checks: the GPU path, no host syncs in the loop, the speed-ups against eager fp32,
the memory estimate against real peaks, typed out-of-memory."""

from __future__ import annotations

import dataclasses
import logging
import math
import threading

import pytest
import torch

from nst_engine import acceleration, transfer
from nst_engine.acceleration import EAGER, Acceleration, Features
from nst_engine.batch import stylize_batch
from nst_engine.device import configure_backends, resolve_device
from nst_engine.errors import Cancelled, OutOfMemory
from nst_engine.memory import FIXED_OVERHEAD, estimate_peak_bytes
from nst_engine.request import StyleResult
from nst_engine.transfer import stylize
from nst_engine.vgg import load_vgg19

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_stylize_on_cuda_lowers_the_loss(tiny_request):
    result = stylize(tiny_request(steps=10), device="cuda")
    assert result.device.startswith("cuda:")
    assert result.image.shape == (36, 48, 3)
    assert result.losses.final.style < result.losses.initial.style


@pytest.mark.parametrize("speedups", [EAGER, Acceleration(bf16=True)], ids=["fp32", "bf16"])
def test_the_optimisation_loop_never_syncs_with_the_host(tiny_request, speedups):
    request = tiny_request(size=64, steps=12)
    device = resolve_device("cuda")
    configure_backends(device)
    plan = transfer.plan_request(request)
    images = transfer.decode_inputs(request, plan)
    content, styles = images.at(request, 64, device)
    objective = transfer.Objective(Features(load_vgg19("caffe", device), speedups), request, plan, content, styles)
    # Progress after every evaluation: its loss terms come through non-blocking copies into pinned memory.
    seen = []
    run = transfer._Run(plan.steps, seen.append, 1, None, None)
    transfer._optimise(content.clone(), objective, 3, "lbfgs", run, graphs=False)  # cuDNN autotuning, lazy set-up
    torch.cuda.synchronize()
    run.flush()
    reported = len(seen)
    torch.cuda.set_sync_debug_mode("error")
    try:
        image = transfer._optimise(content.clone(), objective, 12, "lbfgs", run, graphs=False)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    run.flush()
    assert run.evaluations == 15
    assert image.isfinite().all()
    iterations = [progress.iteration for progress in seen]
    assert len(seen) > reported and iterations == sorted(set(iterations)) and iterations[-1] <= 15
    assert all(math.isfinite(progress.losses.total) for progress in seen)


@pytest.fixture
def no_recorded_failures():
    acceleration.forget_failures()
    yield
    acceleration.forget_failures()


@pytest.mark.usefixtures("no_recorded_failures")
def test_cuda_graphs_run_without_falling_back_and_match_eager(tiny_request, caplog):
    request = tiny_request(size=128, steps=30, seed=3)
    with caplog.at_level(logging.WARNING, logger="nst_engine.acceleration"):
        graphed = stylize(request, device="cuda", speedups=Acceleration(graphs=True))
    assert not caplog.records, "the graph path fell back to eager"
    eager = stylize(request, device="cuda", speedups=EAGER)
    assert graphed.evaluations == eager.evaluations == 30
    assert graphed.losses.final.total == pytest.approx(eager.losses.final.total, rel=0.02)


@pytest.mark.usefixtures("no_recorded_failures")
def test_bf16_lowers_the_loss_about_as_far_as_fp32(tiny_request, caplog):
    request = tiny_request(size=128, steps=30, seed=3)
    with caplog.at_level(logging.WARNING, logger="nst_engine.acceleration"):
        bf16 = stylize(request, device="cuda", speedups=Acceleration(bf16=True, graphs=True))
    assert not caplog.records, "the bf16 path fell back to eager fp32"
    fp32 = stylize(request, device="cuda", speedups=EAGER)
    assert bf16.losses.final.total < 0.5 * bf16.losses.initial.total
    assert bf16.losses.final.total == pytest.approx(fp32.losses.final.total, rel=0.1)


def test_cancel_between_graph_replays(tiny_request):
    token = threading.Event()
    seen = []

    def on_progress(progress) -> None:
        seen.append(progress.iteration)
        if progress.iteration == 10:
            token.set()

    with pytest.raises(Cancelled):
        stylize(
            tiny_request(size=64, steps=40),
            device="cuda",
            speedups=Acceleration(graphs=True),
            on_progress=on_progress,
            progress_every=1,
            cancel=token,
        )
    assert seen[-1] == 10


def test_a_batch_on_cuda_lowers_each_loss_about_as_far_as_alone(tiny_request):
    requests = [tiny_request(size=128, steps=20, seed=seed, style_weight=weight) for seed, weight in ((1, 1), (2, 3))]
    batched = stylize_batch(requests, device="cuda")
    for request, result in zip(requests, batched):
        assert isinstance(result, StyleResult), result
        alone = stylize(request, device="cuda", speedups=EAGER)
        assert result.losses.final.total == pytest.approx(alone.losses.final.total, rel=0.05)


@pytest.mark.parametrize("size", [256, 512])
def test_memory_estimate_bounds_the_measured_peak(tiny_request, size):
    request = tiny_request(size=size, steps=5)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    baseline = torch.cuda.memory_allocated()
    stylize(request, device="cuda")
    measured = torch.cuda.max_memory_allocated() - baseline
    # The model's weights may already be resident (baseline), so compare against the estimate
    # without the fixed CUDA context cost, which the allocator never sees.
    estimate = estimate_peak_bytes(request, "cuda") - FIXED_OVERHEAD["cuda"]
    assert measured <= estimate
    assert estimate < 3 * measured + 200 * 2**20


def test_out_of_memory_is_a_typed_error_and_memory_is_released(tiny_request):
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, 2 * 2**30 / total))
    try:
        with pytest.raises(OutOfMemory, match="memory"):
            stylize(tiny_request(size=4096, steps=2), device="cuda")
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    assert torch.cuda.memory_allocated() < 1 * 2**30
    result = stylize(dataclasses.replace(tiny_request(), steps=2), device="cuda")
    assert result.evaluations == 2
