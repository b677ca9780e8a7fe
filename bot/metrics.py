"""Prometheus metrics of the bot, in a registry of its own (no process-global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from nst_engine.pool import PoolStats

_DURATION_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 3600)
_BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 32)
_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


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
        self.running = Gauge(
            "nst_jobs_running", "Jobs running, by node and device.", ["node", "device"], registry=self.registry
        )
        self.workers = Gauge(
            "nst_workers", "Warm workers, by node and device.", ["node", "device"], registry=self.registry
        )
        self.memory = Gauge(
            "nst_device_memory_bytes",
            "Device memory in bytes, by node, device and kind (used, total).",
            ["node", "device", "kind"],
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
        self.backend = Gauge(
            "nst_pool_backend",
            "1 for the backend the pool runs on (local or ray).",
            ["backend"],
            registry=self.registry,
        )
        self.nodes = Gauge("nst_nodes", "Machines the pool has worker slots on.", registry=self.registry)
        self.loop_lag = Histogram(
            "nst_event_loop_lag_seconds",
            "How much later than asked the event loop woke a timer (sampled every 0.1 s).",
            buckets=_LAG_BUCKETS,
            registry=self.registry,
        )

    def refresh(self, stats: PoolStats) -> None:
        """Copy the pool's current figures into the gauges."""
        self.queue_length.set(stats.queue_length)
        self.pool_alive.set(1 if stats.alive else 0)
        self.backend.clear()
        self.backend.labels(stats.backend).set(1)
        self.nodes.set(len(stats.nodes))
        # Nodes come and go: only what the pool has now is reported.
        for gauge in (self.workers, self.running, self.memory):
            gauge.clear()
        for place, count in stats.workers_by_device.items():
            node, device = _node_and_device(stats, place)
            self.workers.labels(node, device).set(count)
            self.running.labels(node, device).set(stats.running_by_device.get(place, 0))
        for place, (used, total) in stats.memory.items():
            node, device = _node_and_device(stats, place)
            self.memory.labels(node, device, "used").set(used)
            self.memory.labels(node, device, "total").set(total)
        # The pool counts job starts by batch size; observe the ones since the last refresh.
        for size, count in stats.batch_sizes.items():
            for _ in range(count - self._batch_sizes_seen.get(size, 0)):
                self.batch_size.observe(size)
            self._batch_sizes_seen[size] = count

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


def _node_and_device(stats: PoolStats, place: str) -> tuple[str, str]:
    """A pool place (``cuda:0``, or ``<node>/cuda:0`` on a cluster) as a node and a device label."""
    node = stats.node_by_device.get(place, "local")
    return node, place.removeprefix(f"{node}/")
