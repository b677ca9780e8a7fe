"""Batches in /metrics (the nst_batch_size histogram) and in /nst status."""

from __future__ import annotations

from bot.metrics import Metrics
from bot.render import StatusFigures, status_message
from nst_engine.pool import PoolStats


def stats(batch_sizes: dict[int, int], batches: dict[str, list[int]]) -> PoolStats:
    return PoolStats(
        queue_length=0,
        running_by_device={"cuda:0": 5},
        workers_by_device={"cuda:0": 1},
        memory={"cuda:0": (1, 2)},
        completed=0,
        failed=0,
        cancelled=0,
        recent_durations=[],
        alive=True,
        batches_by_device=batches,
        batch_sizes=batch_sizes,
    )


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_batch_sizes_are_observed_once_each_across_refreshes():
    metrics = Metrics()
    metrics.refresh(stats({1: 2, 4: 3}, {}))
    metrics.refresh(stats({1: 2, 4: 4}, {}))
    assert sample(metrics, "nst_batch_size_count") == 6
    assert sample(metrics, "nst_batch_size_sum") == 2 * 1 + 4 * 4
    assert sample(metrics, "nst_batch_size_bucket", le="1.0") == 2
    assert sample(metrics, "nst_batch_size_bucket", le="4.0") == 6


def test_status_lists_the_batches_of_each_device():
    figures = StatusFigures(
        queue_length=0,
        workers_by_device={"cuda:0": 1, "cuda:1": 1},
        running_by_device={"cuda:0": 5, "cuda:1": 1},
        memory={},
        completed=0,
        failed=0,
        cancelled=0,
        uptime_s=1.0,
        version="test",
        pool_alive=True,
        batches_by_device={"cuda:0": [4, 1], "cuda:1": [1]},
    )
    fields = {field.name: field.value for field in status_message(figures).embed.fields}
    assert fields["Batches"] == "cuda:0: 4 + 1 jobs"
    alone = StatusFigures(**{**figures.__dict__, "batches_by_device": {"cuda:0": [1, 1]}})
    assert "Batches" not in {field.name for field in status_message(alone).embed.fields}
