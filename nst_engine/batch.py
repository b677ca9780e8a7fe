"""Several jobs of one shape optimised together: one batched forward and backward per step.

Each member keeps everything that makes it a job of its own: its targets and loss weights,
its optimiser state (L-BFGS or Adam), seed, evaluation budget, cancel token and progress.
Only the network pass is shared: the members' images are stacked into one batch, and since
VGG treats the images of a batch independently and the members' losses are summed, each
member's gradient is exactly what it would be alone.

Members join and leave between steps (continuous batching): a job that finishes, fails or is
cancelled leaves without disturbing the others, and a new job of the same shape can join at
once. Jobs that change shape while they run (coarse to fine) cannot share a batch.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from nst_engine import acceleration, lbfgs
from nst_engine.acceleration import Acceleration, Features, is_out_of_memory
from nst_engine.device import configure_backends, resolve_device
from nst_engine.errors import EngineError, InvalidRequest, OutOfMemory
from nst_engine.presets import LBFGS_HISTORY
from nst_engine.request import CancelToken, LossSummary, StyleRequest, StyleResult
from nst_engine.transfer import (
    ADAM_AVERAGE_DECAY,
    ADAM_LR,
    LBFGS_FIRST_STEP,
    PIXEL_SCALE,
    Objective,
    Plan,
    ProgressCallback,
    ProgressGate,
    decode_inputs,
    _drop_thin_scales,
    _preview_renderer,
    _Run,
    finish,
    fit_long_side,
    plan_request,
    scale_problem,
    to_uint8,
    working_size,
)
from nst_engine.vgg import load_vgg19

BatchKey = tuple[int, int, str, str, str, tuple[str, ...]]
"""(width, height, weights, pooling, padding, layers): what jobs must share to run in one batch."""


def batch_key(request: StyleRequest, width: int, height: int) -> BatchKey | None:
    """The batch a request with content ``width`` x ``height`` can join; None if it must run alone.

    Raises InvalidRequest for a request that cannot run at all.
    """
    plan = plan_request(request)
    if len(plan.scales) > 1:
        return None
    layers = tuple(dict.fromkeys(request.content_layers + request.style_layers))
    shape = working_size(fit_long_side(width, height, plan.scales[0][0]), request.shape_multiple)
    return (*shape, request.weights, request.pooling, request.padding, layers)


def request_batch_key(request: StyleRequest) -> BatchKey | None:
    """:func:`batch_key` of a request, its content decoded as a batch decodes it."""
    plan = plan_request(request)
    return batch_key(request, *decode_inputs(request, plan).content.size)


@dataclass
class Outcome:
    """How a member left the batch: its result, or the engine error that ended it."""

    member: Member
    result: StyleResult | None = None
    error: BaseException | None = None


@dataclass(eq=False)
class Member:
    """One job in a batch."""

    request: StyleRequest
    plan: Plan
    run: _Run
    content: torch.Tensor
    objective: Objective
    pixels: torch.Tensor  # the image being optimised, 0-255, a leaf of its own
    update: Callable[[], None]
    size: tuple[int, int]  # the output's (width, height)
    output: Callable[[], torch.Tensor]  # the result so far, in [0, 1]
    started: float
    tag: object = None  # the caller's handle on the job


class Batch:
    """The members running together on one device with one network."""

    def __init__(
        self, key: BatchKey, device: str | torch.device | None = None, speedups: Acceleration | None = None
    ) -> None:
        self.key = key
        self.device = resolve_device(device)
        configure_backends(self.device)
        _, _, weights, pooling, padding, self.layers = key
        # Eager steps: a batch changes as jobs join and leave, so one captured graph would not fit it.
        wanted = acceleration.usable(self.device, speedups or acceleration.default_for(self.device))
        network = load_vgg19(weights, self.device, pooling, padding)
        self.features = Features(network, dataclasses.replace(wanted, graphs=False))
        self.members: list[Member] = []

    def __len__(self) -> int:
        return len(self.members)

    def join(
        self,
        request: StyleRequest,
        *,
        on_progress: ProgressCallback | None = None,
        progress_every: int = 10,
        preview_size: int | None = None,
        cancel: CancelToken | None = None,
        gate: ProgressGate | None = None,
        tag: object = None,
    ) -> Member:
        """Add a job; it takes part from the next step. Raises the engine's errors for this job alone."""
        started = time.perf_counter()
        plan = plan_request(request)
        images = decode_inputs(request, plan)
        plan = dataclasses.replace(plan, scales=_drop_thin_scales(plan.scales, *images.content.size))
        if batch_key(request, *images.content.size) != self.key:
            raise InvalidRequest(f"This job does not fit batch {self.key}.")
        run = _Run(
            plan.steps, on_progress, progress_every, _preview_renderer(request, images, preview_size), cancel, gate
        )
        run.check_cancel()
        try:
            content, objective, image = scale_problem(request, plan, images, plan.scales[0][0], self.features, None)
        except Exception as exc:
            if is_out_of_memory(exc):
                raise OutOfMemory(f"Not enough {self.device.type.upper()} memory to add this job.") from None
            raise
        pixels = (image.detach() * PIXEL_SCALE).requires_grad_(True)
        size = fit_long_side(*images.content.size, plan.scales[0][0])
        update, output = _updater(request, pixels)
        member = Member(request, plan, run, content, objective, pixels, update, size, output, started, tag)
        self.members.append(member)
        return member

    def step(self) -> list[Outcome]:
        """One evaluation and update for every member; returns those that left the batch."""
        outcomes = []
        for member in list(self.members):
            try:
                member.run.check_cancel()
            except EngineError as exc:
                outcomes.append(self._leave(member, error=exc))
        if not self.members:
            return outcomes
        try:
            values = self._evaluate()
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            error = OutOfMemory(
                f"Not enough {self.device.type.upper()} memory for a batch of {len(self.members)} "
                f"{self.key[0]}x{self.key[1]} images. Try a smaller size."
            )
            return outcomes + [self._leave(member, error=error) for member in list(self.members)]
        for index, member in enumerate(list(self.members)):
            try:
                member.update()
                member.run.evaluated(values[index], lambda member=member: member.pixels.detach() / PIXEL_SCALE)
                if member.run.evaluations >= member.plan.steps:
                    outcomes.append(self._leave(member, result=self._result(member)))
            except Exception as exc:
                outcomes.append(self._leave(member, error=exc))
        return outcomes

    def leave(self, member: Member, error: BaseException) -> Outcome:
        """Take ``member`` out before its budget is spent (the caller stopped it)."""
        return self._leave(member, error=error)

    def _evaluate(self) -> torch.Tensor:
        """Each member's (content, style, tv, total) from one batched pass; gradients into each member's pixels."""
        for member in self.members:
            member.pixels.grad = None
        images = torch.cat([member.pixels for member in self.members]) / PIXEL_SCALE
        features = self.features(images, self.layers)
        values = torch.stack(
            [
                member.objective.terms({name: value[i : i + 1] for name, value in features.items()}, images[i : i + 1])
                for i, member in enumerate(self.members)
            ]
        )
        values[:, 3].sum().backward()
        return values.detach()

    def _result(self, member: Member) -> StyleResult:
        image, final = finish(member.request, member.objective, member.output(), member.content, member.size)
        return StyleResult(
            image=to_uint8(image),
            losses=LossSummary(initial=member.run.initial_terms(), final=final),
            evaluations=member.run.evaluations,
            seconds=time.perf_counter() - member.started,
            device=str(self.device),
            seed=member.plan.seed,
            weights=member.request.weights,
        )

    def _leave(self, member: Member, result: StyleResult | None = None, error: BaseException | None = None) -> Outcome:
        self.members.remove(member)
        return Outcome(member, result, error)


def _updater(
    request: StyleRequest, pixels: torch.Tensor
) -> tuple[Callable[[], None], Callable[[], torch.Tensor]]:
    """The member's own optimiser step, from the gradient in ``pixels.grad``, and its output (as ``stylize`` has them)."""

    def last() -> torch.Tensor:
        return (pixels.detach() / PIXEL_SCALE).clamp(0, 1)

    if request.optimizer == "lbfgs":
        return lbfgs.LBFGS(pixels, LBFGS_HISTORY, LBFGS_FIRST_STEP, bounds=(0.0, PIXEL_SCALE)).update, last
    adam = torch.optim.Adam([pixels], lr=ADAM_LR)
    average = torch.zeros_like(pixels, requires_grad=False)
    steps = 0

    def update() -> None:
        nonlocal steps
        adam.step()
        with torch.no_grad():
            pixels.clamp_(0, PIXEL_SCALE)
            average.lerp_(pixels, 1 - ADAM_AVERAGE_DECAY)
        steps += 1

    def averaged() -> torch.Tensor:
        if steps == 0:
            return last()
        return (average / (1 - ADAM_AVERAGE_DECAY**steps) / PIXEL_SCALE).clamp(0, 1)

    return update, averaged


def stylize_batch(
    requests: list[StyleRequest], *, device: str | torch.device | None = None, speedups: Acceleration | None = None
) -> list[StyleResult | BaseException]:
    """Run ``requests`` (all of one batch key) together; each gets its result or its own error."""
    outcomes: dict[int, StyleResult | BaseException] = {}
    batch: Batch | None = None
    for index, request in enumerate(requests):
        try:
            if batch is None:
                key = request_batch_key(request)
                if key is None:
                    raise InvalidRequest("Coarse-to-fine jobs cannot run in a batch.")
                batch = Batch(key, device, speedups)
            batch.join(request, tag=index)
        except EngineError as exc:
            outcomes[index] = exc
    while batch is not None and len(batch):
        for outcome in batch.step():
            outcomes[outcome.member.tag] = outcome.result if outcome.result is not None else outcome.error
    return [outcomes[index] for index in range(len(requests))]
