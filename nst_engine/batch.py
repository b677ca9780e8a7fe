"""Several jobs of one shape optimised together: one batched forward and backward per step.

Each member keeps everything that makes it a job of its own: its targets and loss weights,
its optimiser state (L-BFGS or Adam), seed, evaluation budget, cancel token and progress.
Only the network pass is shared: the members' images are stacked into one batch, and since
VGG treats the images of a batch independently and the members' losses are summed, each
member's gradient is exactly what it would be alone.

Members join and leave between steps (continuous batching): a job that finishes, fails or is
cancelled leaves without disturbing the others, and a new job of the same shape can join at
once. A coarse-to-fine job is a member of the batch of its current scale's shape: when it has
spent a scale's budget it moves, its image upsampled and its optimiser started afresh as
``stylize`` does between scales, to the batch of its next scale's shape (:class:`Batches`).
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
    _Images,
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


def _key(request: StyleRequest, long_side: int, width: int, height: int) -> BatchKey:
    """The batch of ``request`` at one scale, its content being ``width`` x ``height``."""
    layers = tuple(dict.fromkeys(request.content_layers + request.style_layers))
    shape = working_size(fit_long_side(width, height, long_side), request.shape_multiple)
    return (*shape, request.weights, request.pooling, request.padding, layers)


def batch_key(request: StyleRequest, width: int, height: int) -> BatchKey:
    """The batch a request with content ``width`` x ``height`` joins first: its coarsest scale's.

    Raises InvalidRequest for a request that cannot run at all.
    """
    scales = _drop_thin_scales(plan_request(request).scales, width, height)
    return _key(request, scales[0][0], width, height)


@dataclass
class Outcome:
    """How a member left a batch: its result, the engine error that ended it, or neither when
    it spent its scale's budget and goes on at its next scale (``moving``)."""

    member: Member
    result: StyleResult | None = None
    error: BaseException | None = None

    @property
    def moving(self) -> bool:
        return self.result is None and self.error is None


class Member:
    """One job in a batch, at its current scale."""

    def __init__(
        self, request: StyleRequest, plan: Plan, images: _Images, run: _Run, started: float, tag: object = None
    ) -> None:
        self.request = request
        self.plan = plan
        self.images = images
        self.run = run
        self.started = started
        self.tag = tag  # the caller's handle on the job
        self.keys = tuple(_key(request, side, *images.content.size) for side, _ in plan.scales)
        self.size = fit_long_side(*images.content.size, plan.scales[-1][0])  # the output's (width, height)
        self.scale = -1  # index of the scale being optimised; -1 before the first
        self.left = 0  # evaluations left at this scale
        self.content: torch.Tensor | None = None
        self.objective: Objective | None = None
        self.pixels: torch.Tensor | None = None  # the image being optimised, 0-255, a leaf of its own
        self.update: Callable[[], None] = _not_started
        self.output: Callable[[], torch.Tensor] = _not_started  # the result at this scale so far, in [0, 1]

    @property
    def next_key(self) -> BatchKey:
        """The batch this member goes to next: its first scale's before it starts, then the next scale's."""
        return self.keys[self.scale + 1]

    @property
    def last_scale(self) -> bool:
        return self.scale == len(self.plan.scales) - 1

    def start_next_scale(self, features: Features) -> None:
        """Set up the next scale with ``features`` (the network of the batch it joins), from this scale's
        result upsampled (as ``stylize`` does), with a fresh optimiser."""
        previous = None if self.scale < 0 else self.output()
        side, budget = self.plan.scales[self.scale + 1]
        self.objective = None  # the finished scale's targets are not needed any more
        self.content, self.objective, image = scale_problem(
            self.request, self.plan, self.images, side, features, previous
        )
        self.pixels = (image.detach() * PIXEL_SCALE).requires_grad_(True)
        self.update, self.output = _updater(self.request, self.pixels)
        self.scale += 1
        self.left = budget


def _not_started() -> torch.Tensor:
    raise RuntimeError("the member has not started a scale")


def prepare(
    request: StyleRequest,
    *,
    on_progress: ProgressCallback | None = None,
    progress_every: int = 10,
    preview_size: int | None = None,
    cancel: CancelToken | None = None,
    gate: ProgressGate | None = None,
    tag: object = None,
) -> Member:
    """A job made ready to join a batch (its images decoded, its plan made). Raises the engine's errors."""
    started = time.perf_counter()
    plan = plan_request(request)
    images = decode_inputs(request, plan)
    plan = dataclasses.replace(plan, scales=_drop_thin_scales(plan.scales, *images.content.size))
    run = _Run(plan.steps, on_progress, progress_every, _preview_renderer(request, images, preview_size), cancel, gate)
    run.check_cancel()
    return Member(request, plan, images, run, started, tag)


class Batch:
    """The members running together at one shape on one device with one network."""

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

    def join(self, request: StyleRequest, **options: object) -> Member:
        """Add a job (``options`` as :func:`prepare` takes them); it takes part from the next step.
        Raises the engine's errors for this job alone."""
        member = prepare(request, **options)  # type: ignore[arg-type]
        self.enter(member)
        return member

    def enter(self, member: Member) -> None:
        """Take in a prepared member, or one that finished its previous scale, at its next scale."""
        if member.next_key != self.key:
            raise InvalidRequest(f"This job does not fit batch {self.key}.")
        try:
            member.start_next_scale(self.features)
        except Exception as exc:
            if is_out_of_memory(exc):
                raise OutOfMemory(f"Not enough {self.device.type.upper()} memory to add this job.") from None
            raise
        self.members.append(member)

    def step(self) -> list[Outcome]:
        """One evaluation and update for every member; returns those that left the batch (finished,
        failed, or done with a scale before their last and ``moving`` on)."""
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
                member.left -= 1
                member.run.evaluated(values[index], lambda member=member: member.pixels.detach() / PIXEL_SCALE)
                if member.left == 0:
                    outcomes.append(self._leave(member, result=self._result(member) if member.last_scale else None))
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
        member.run.flush()
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


class Batches:
    """Every batch on one device. A job joins the batch of its first scale's shape, and a
    coarse-to-fine job moves on to the batch of each next scale's shape (opened when none runs
    there); the batches take turns, one step each per :meth:`step`."""

    def __init__(self, device: str | torch.device | None = None, speedups: Acceleration | None = None) -> None:
        self.device = device
        self.speedups = speedups
        self.batches: dict[BatchKey, Batch] = {}

    def __len__(self) -> int:
        return sum(len(batch) for batch in self.batches.values())

    def members(self) -> list[Member]:
        return [member for batch in self.batches.values() for member in batch.members]

    def join(self, request: StyleRequest, **options: object) -> Member:
        """Add a job (``options`` as :func:`prepare` takes them). Raises the engine's errors for this job alone."""
        member = prepare(request, **options)  # type: ignore[arg-type]
        self._enter(member)
        return member

    def step(self, ended: Callable[[Outcome], None]) -> None:
        """One step of every batch, in turn; ``ended`` gets each member that finished or failed as soon
        as its batch has stepped. Members done with a scale enter their next scale's batch after the
        round (also when a step raised), so they take part from the next round. Raises what a batch
        step raises that the engine did not mean to."""
        moving: list[Member] = []
        try:
            for key, batch in list(self.batches.items()):
                outcomes = batch.step()
                if not len(batch):
                    del self.batches[key]
                for outcome in outcomes:
                    if outcome.moving:
                        moving.append(outcome.member)
                    else:
                        ended(outcome)
        finally:
            for member in moving:
                try:
                    self._enter(member)
                except Exception as exc:
                    ended(Outcome(member, error=exc))

    def _enter(self, member: Member) -> None:
        key = member.next_key
        batch = self.batches.get(key) or Batch(key, self.device, self.speedups)
        self.batches[key] = batch
        try:
            batch.enter(member)
        finally:
            if not len(batch):
                del self.batches[key]


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
    """Run ``requests`` together, those of one shape (per scale) in one batch; each gets its result or its own error."""
    outcomes: dict[int, StyleResult | BaseException] = {}
    batches = Batches(device, speedups)
    for index, request in enumerate(requests):
        try:
            batches.join(request, tag=index)
        except EngineError as exc:
            outcomes[index] = exc

    def ended(outcome: Outcome) -> None:
        outcomes[outcome.member.tag] = outcome.result if outcome.result is not None else outcome.error

    while len(batches):
        batches.step(ended)
    return [outcomes[index] for index in range(len(requests))]
