"""Prometheus metrics of the bot, in a registry of its own (no process-global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from nst_engine.pool import PoolStats

_DURATION_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 3600)
_BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 32)


class Metrics:
    """Counters updated as jobs end; gauges refreshed from the pool at each scrape."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.jobs = Counter(
            "nst_jobs",
            "Jobs that ended, by outcome (finished, failed, cancelled).",
            ["outcome"],
            registry=self.registry,
        )
        self.refusals = Counter(
            "nst_refusals", "Requests refused before queueing, by reason.", ["reason"], registry=self.registry
        )
        self.duration = Histogram(
            "nst_job_duration_seconds",
            "Seconds from accepting a job to its end (queue wait included).",
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.queue_length = Gauge("nst_queue_length", "Jobs waiting in the queue.", registry=self.registry)
        self.running = Gauge("nst_jobs_running", "Jobs running, by device.", ["device"], registry=self.registry)
        self.workers = Gauge("nst_workers", "Worker processes, by device.", ["device"], registry=self.registry)
        self.memory = Gauge(
            "nst_device_memory_bytes",
            "Device memory in bytes, by device and kind (used, total).",
            ["device", "kind"],
            registry=self.registry,
        )
        self.pool_alive = Gauge("nst_pool_alive", "1 while the worker pool is serving.", registry=self.registry)
        self.batch_size = Histogram(
            "nst_batch_size",
            "Jobs started, by the size of the batch they joined (1: alone).",
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self._batch_sizes_seen: dict[int, int] = {}

    def refresh(self, stats: PoolStats) -> None:
        """Copy the pool's current figures into the gauges."""
        self.queue_length.set(stats.queue_length)
        self.pool_alive.set(1 if stats.alive else 0)
        for device, count in stats.workers_by_device.items():
            self.workers.labels(device).set(count)
            self.running.labels(device).set(stats.running_by_device.get(device, 0))
        for device, (used, total) in stats.memory.items():
            self.memory.labels(device, "used").set(used)
            self.memory.labels(device, "total").set(total)
        # The pool counts job starts by batch size; observe the ones since the last refresh.
        for size, count in stats.batch_sizes.items():
            for _ in range(count - self._batch_sizes_seen.get(size, 0)):
                self.batch_size.observe(size)
            self._batch_sizes_seen[size] = count

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
