"""Progress throttling in the worker: the first report, the interval, previews dropped between."""

from __future__ import annotations

from nst_engine.pool.throttle import ProgressThrottle
from nst_engine.request import LossTerms, Progress

TERMS = LossTerms(content=1.0, style=2.0, tv=0.0, total=3.0)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def progress(iteration: int, preview: bytes | None = b"png") -> Progress:
    return Progress(iteration, 100, TERMS, preview)


def test_first_report_always_passes_with_its_preview() -> None:
    throttle = ProgressThrottle(0.5, 2.0, clock=Clock())
    assert throttle.admit(progress(1)) == progress(1)


def test_reports_closer_than_the_interval_are_dropped() -> None:
    clock = Clock()
    throttle = ProgressThrottle(0.5, 2.0, clock=clock)
    throttle.admit(progress(1))
    clock.now += 0.2
    assert throttle.admit(progress(2)) is None
    clock.now += 0.4
    assert throttle.admit(progress(3)) is not None


def test_previews_ride_along_at_most_every_preview_interval() -> None:
    clock = Clock()
    throttle = ProgressThrottle(0.5, 2.0, clock=clock)
    sent = []
    for iteration in range(1, 11):
        sent.append(throttle.admit(progress(iteration)))
        clock.now += 0.5
    assert all(report is not None for report in sent)
    with_preview = [report.iteration for report in sent if report.preview is not None]
    assert with_preview == [1, 5, 9]
    assert sent[1].losses == TERMS


def test_reports_without_preview_pass_untouched() -> None:
    clock = Clock()
    throttle = ProgressThrottle(0.5, 2.0, clock=clock)
    assert throttle.admit(progress(1, preview=None)) == progress(1, preview=None)
    clock.now += 1
    assert throttle.admit(progress(2)).preview == b"png"


def test_it_says_beforehand_which_reports_and_previews_it_would_send() -> None:
    clock = Clock()
    throttle = ProgressThrottle(0.5, 2.0, clock=clock)
    decisions = []
    for iteration in range(1, 10):
        due, preview_due = throttle.progress_due(), throttle.preview_due()
        admitted = throttle.admit(progress(iteration))
        assert due == (admitted is not None)
        assert preview_due or admitted is None or admitted.preview is None
        decisions.append((due, preview_due and due))
        clock.now += 0.25
    assert [i for i, (due, _) in enumerate(decisions, 1) if due] == [1, 3, 5, 7, 9]
    assert [i for i, (_, preview) in enumerate(decisions, 1) if preview] == [1, 9]
