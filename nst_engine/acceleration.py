"""GPU-only speed-ups of the optimisation loop, each with a clean way back to eager fp32.

- **bf16**: VGG's forward and backward under bfloat16 autocast; Gram matrices, losses and the
  optimiser stay fp32 (the features are cast back before they leave the network). Not fp16:
  the Caffe weights take 0-255 input and Gram values exceed fp16's range.
- **graphs**: after a first eager step and a short warm-up, one optimisation step
  ("evaluate + update") is captured as a CUDA graph and replayed for the rest of the scale,
  which removes the per-kernel launch cost of some 200 small kernels per step.
- **compile**: ``torch.compile`` of the network's forward (off unless asked for; it costs
  tens of seconds per shape and process).

If any of these fails on a machine (any error that is not the engine's own nor out-of-memory),
``stylize`` reruns the job eagerly in fp32, one warning is logged, and that device runs
eagerly from then on: a user never sees an error for it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import torch

from nst_engine.presets import BF16_ON_CUDA

log = logging.getLogger(__name__)

GRAPH_WARMUP_STEPS = 2
"""Eager steps on a side stream between the first step and the capture (cuBLAS/cuDNN set-up
and cuDNN autotuning must not happen inside a capture)."""


@dataclass(frozen=True)
class Acceleration:
    """Which speed-ups a job may use."""

    bf16: bool = False
    graphs: bool = False
    compile: bool = False

    @property
    def eager(self) -> bool:
        return not (self.bf16 or self.graphs or self.compile)


EAGER = Acceleration()


_failed_devices: set[str] = set()
_failed_lock = threading.Lock()


def default_for(device: torch.device) -> Acceleration:
    """What a job on ``device`` uses unless told otherwise: graphs (and bf16 once validated) on CUDA."""
    if device.type != "cuda":
        return EAGER
    return Acceleration(bf16=BF16_ON_CUDA, graphs=True)


def usable(device: torch.device, wanted: Acceleration) -> Acceleration:
    """``wanted``, or EAGER on a device where a speed-up has already failed."""
    with _failed_lock:
        return EAGER if str(device) in _failed_devices else wanted


def record_failure(device: torch.device, wanted: Acceleration, cause: BaseException) -> None:
    """Remember that ``wanted`` failed on ``device``; the first failure per device logs a warning."""
    with _failed_lock:
        first = str(device) not in _failed_devices
        _failed_devices.add(str(device))
    if first:
        log.warning(
            "GPU speed-ups %s failed on %s (%s: %s); running eagerly in fp32 on this device from now on.",
            wanted,
            device,
            type(cause).__name__,
            cause,
        )


def forget_failures() -> None:
    """Clear the record of failed devices (for tests, and after a driver change)."""
    with _failed_lock:
        _failed_devices.clear()


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is the allocator running out (CUDA or host), which no fall-back can fix."""
    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)
    )


class Features:
    """The network as the objective sees it: optionally compiled, optionally under bf16 autocast.

    Features always come out in fp32, so Gram matrices and losses are computed in fp32.
    """

    def __init__(self, model: torch.nn.Module, acceleration: Acceleration) -> None:
        self.model = model
        self.device = next(model.parameters()).device
        self.bf16 = acceleration.bf16
        self.forward = torch.compile(model, dynamic=False) if acceleration.compile else model

    def __call__(self, image: torch.Tensor, names: tuple[str, ...] | list[str]) -> dict[str, torch.Tensor]:
        if not self.bf16:
            return self.forward(image, names)
        with torch.autocast(device_type=image.device.type, dtype=torch.bfloat16):
            features = self.forward(image, names)
        return {name: value.float() for name, value in features.items()}


class StepLoop:
    """Runs one optimisation step per call: eagerly, or (with graphs) replaying a captured graph.

    ``step`` must only update tensors in place after its first call, and return the same
    output tensor's values each time (a captured graph writes them into fixed memory).
    The caller checks cancel and reports progress between calls.
    """

    def __init__(self, step: Callable[[], torch.Tensor], device: torch.device, graphs: bool) -> None:
        self.step = step
        self.device = device
        self.graphs = graphs
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.output: torch.Tensor | None = None

    def __call__(self) -> torch.Tensor:
        self.calls += 1
        if not self.graphs or self.calls == 1:
            return self.step()
        if self.calls <= 1 + GRAPH_WARMUP_STEPS:
            return self._warm_up()
        if self.graph is None:
            self._capture()
        self.graph.replay()
        return self.output

    def _warm_up(self) -> torch.Tensor:
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            output = self.step()
        torch.cuda.current_stream(self.device).wait_stream(stream)
        return output

    def _capture(self) -> None:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.output = self.step()
        self.graph = graph
