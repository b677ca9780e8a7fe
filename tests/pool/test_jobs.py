"""Job handles on their own: the update stream, subscribers, final states and results."""

from __future__ import annotations

import numpy as np
import pytest

from nst_engine.pool import JobCancelled, JobFailed
from nst_engine.pool.jobs import Job, JobUpdate
from nst_engine.request import LossSummary, LossTerms, Progress, StyleRequest, StyleResult

TERMS = LossTerms(content=1.0, style=1.0, tv=0.0, total=2.0)


def make_job(cancel=lambda job: True) -> Job:
    return Job(
        "job-1",
        "owner",
        StyleRequest(content=b"", styles=(b"",)),
        None,
        cancel=cancel,
        position=lambda job: 3,
        eta=lambda job: 12.5,
    )


def make_result() -> StyleResult:
    return StyleResult(
        image=np.zeros((4, 6, 3), np.uint8),
        losses=LossSummary(TERMS, TERMS),
        evaluations=2,
        seconds=0.1,
        device="cpu",
        seed=0,
        weights="caffe",
    )


async def collect(job: Job) -> list[JobUpdate]:
    return [update async for update in job.updates()]


async def test_a_subscriber_gets_the_current_state_then_every_update() -> None:
    job = make_job()
    early = job.updates()
    first = await anext(early)
    assert (first.kind, first.position, first.eta) == ("queued", 3, 12.5)
    job._started("cpu", "cpu/0")
    late = job.updates()
    assert (await anext(late)).device == "cpu"
    job._progress(Progress(1, 2, TERMS))
    job._finished(make_result())

    assert [update.kind async for update in early] == ["started", "progress", "finished"]
    assert [update.kind async for update in late] == ["progress", "finished"]
    assert job.last_progress == Progress(1, 2, TERMS)


async def test_subscribing_after_the_end_yields_the_final_update_only() -> None:
    job = make_job()
    job._failed("the worker crashed")
    updates = await collect(job)
    assert [(u.kind, u.error) for u in updates] == [("failed", "the worker crashed")]


async def test_result_returns_or_raises_by_final_state() -> None:
    done, failed, cancelled = make_job(), make_job(), make_job()
    result = make_result()
    done._finished(result)
    failed._failed("took too long")
    cancelled._cancelled()
    assert await done.result() is result
    with pytest.raises(JobFailed, match="took too long"):
        await failed.result()
    with pytest.raises(JobCancelled):
        await cancelled.result()
    assert (done.position, done.eta, failed.error) == (0, 0.0, "took too long")


async def test_cancel_asks_the_pool_only_while_the_job_is_live() -> None:
    asked = []
    job = make_job(cancel=lambda j: asked.append(j) or True)
    assert job.cancel()
    job._cancelled()
    assert not job.cancel()
    assert asked == [job]


async def test_a_job_cannot_end_twice() -> None:
    job = make_job()
    job._cancelled()
    with pytest.raises(AssertionError):
        job._finished(make_result())
