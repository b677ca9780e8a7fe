"""Throughput averages and the queue projection behind job ETAs."""

from __future__ import annotations

import pytest

from nst_engine.pool.throughput import Slot, ThroughputModel, project_finish


def test_nothing_measured_means_no_estimate() -> None:
    model = ThroughputModel()
    assert model.expected_seconds("cpu", 1000.0) is None
    assert project_finish([Slot("cpu", 0.0)], [1000.0], model) == [None]


def test_estimates_scale_with_work() -> None:
    model = ThroughputModel()
    model.record("cpu", 10.0, work=1000.0)
    assert model.expected_seconds("cpu", 4000.0) == pytest.approx(40.0)
    assert model.expected_seconds("cpu", None) == pytest.approx(10.0)


def test_average_follows_recent_jobs() -> None:
    model = ThroughputModel(alpha=0.5)
    model.record("cpu", 10.0, work=None)
    model.record("cpu", 20.0, work=None)
    assert model.expected_seconds("cpu", None) == pytest.approx(15.0)
    assert list(model.recent_durations) == [10.0, 20.0]


def test_an_unmeasured_device_borrows_the_others_figures() -> None:
    model = ThroughputModel()
    model.record("cuda:0", 2.0, work=100.0)
    model.record("cuda:1", 4.0, work=100.0)
    assert model.expected_seconds("cuda:2", 100.0) == pytest.approx(3.0)


def test_projection_fills_the_slot_that_frees_first() -> None:
    model = ThroughputModel()
    model.record("cpu", 10.0, work=None)
    slots = [Slot("cpu", 3.0), Slot("cpu", 0.0)]
    assert project_finish(slots, [None, None, None], model) == pytest.approx([10.0, 13.0, 20.0])


def test_projection_is_unknown_while_a_running_job_is() -> None:
    model = ThroughputModel()
    model.record("cpu", 10.0, work=None)
    assert project_finish([Slot("cpu", None)], [None], model) == [None]
