"""What the bot remembers about a job: its parameters, where to answer, and how far it got.

A :class:`JobRecord` holds everything needed to run and deliver a job without the
interaction that created it, which is what lets jobs survive a restart.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from nst_engine.request import ImageSource, LossSummary, LossTerms, StyleRequest, StyleResult

JobState = Literal["queued", "running", "finished", "failed", "cancelled"]
DeliveryState = Literal["pending", "sending", "delivered", "gave_up"]
DeliveryMode = Literal["edit", "channel"]

FINAL_STATES: frozenset[str] = frozenset({"finished", "failed", "cancelled"})
PRESET_PREFIX = "preset:"
BLOB_PREFIX = "blob:"

STYLE_STRENGTH_RANGE = (0.1, 10.0)
SEED_MAX = 2**31 - 1


def new_job_id() -> str:
    """A fresh job id: 32 hex digits, short enough to fit in a button's custom id."""
    return uuid.uuid4().hex


def new_seed() -> int:
    return secrets.randbelow(SEED_MAX)


@dataclass(frozen=True)
class JobParams:
    """The knobs of one job, resolved: no ``None`` left for the engine to guess."""

    quality: str
    size: int
    steps: int
    style_strength: float = 1.0
    preserve_colors: bool = False
    seed: int = 0
    preset: str | None = None

    def with_changes(self, **changes: Any) -> JobParams:
        return replace(self, **changes)

    def to_request(
        self,
        content: ImageSource,
        style: ImageSource,
        *,
        weights: str,
        max_input_pixels: int,
        style_loss: str = "gram",
    ) -> StyleRequest:
        """The engine request for these parameters and source images (bytes, or files the worker reads)."""
        return StyleRequest(
            content=content,
            styles=(style,),
            quality=self.quality,  # type: ignore[arg-type]
            size=self.size,
            steps=self.steps,
            seed=self.seed,
            style_weight=self.style_strength,
            preserve_colors="luminance" if self.preserve_colors else "none",
            weights=weights,
            max_input_pixels=max_input_pixels,
            style_loss=style_loss,  # type: ignore[arg-type]
        )


@dataclass(frozen=True)
class ResultSummary:
    """The numbers shown under a finished image; stored so delivery can be redone after a restart."""

    initial: LossTerms
    final: LossTerms
    evaluations: int
    seconds: float
    device: str
    seed: int
    weights: str
    width: int
    height: int

    @classmethod
    def from_result(cls, result: StyleResult) -> ResultSummary:
        return cls(
            initial=result.losses.initial,
            final=result.losses.final,
            evaluations=result.evaluations,
            seconds=result.seconds,
            device=result.device,
            seed=result.seed,
            weights=result.weights,
            width=result.width,
            height=result.height,
        )

    @property
    def losses(self) -> LossSummary:
        return LossSummary(initial=self.initial, final=self.final)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ResultSummary:
        values = dict(data)
        values["initial"] = LossTerms(**values["initial"])
        values["final"] = LossTerms(**values["final"])
        return cls(**values)


@dataclass
class JobRecord:
    """One accepted job as the durable store keeps it."""

    id: str
    user_id: int
    guild_id: int | None
    channel_id: int
    application_id: int
    interaction_token: str
    token_expires_at: float
    upload_limit: int
    params: JobParams
    content_blob: str
    style_ref: str
    created_at: float
    state: JobState = "queued"
    status_message_id: int | None = None
    error: str | None = None
    summary: ResultSummary | None = None
    delivery: DeliveryState = "pending"
    delivery_mode: DeliveryMode | None = None
    delivered_message_id: int | None = None
    parent_id: str | None = None
    updated_at: float = 0.0
    finished_at: float | None = None
    delivered_at: float | None = None

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def nonce(self) -> str:
        """A per-job nonce (Discord allows 25 characters) so a re-sent channel message is deduplicated."""
        return self.id[:25]

    def token_valid(self, now: float, margin_s: float) -> bool:
        """Whether the interaction token can still be used for ``margin_s`` more seconds."""
        return now + margin_s < self.token_expires_at
