"""Metrics of the detect operator beyond counters of records: the detection latency of actions
(`detected_at - trigger_ts`, wall clock against event time) as cumulative bucket counters, the
shape of a Prometheus histogram, so alerts and dashboards can take quantiles across subtasks.
"""

from __future__ import annotations

from bisect import bisect_left

from udfs.host import Counter

#: Upper bounds of the buckets, ms (the last, +Inf, is `le_inf`).
BUCKETS_MS = (25, 50, 100, 200, 500, 1_000, 2_000, 5_000, 30_000)


def python_counter(group, name: str) -> Counter:
    """A counter of the detect operator: counted in Python, reported as a gauge of the same name.

    Each `inc` of a Flink counter is a call into the JVM (thread mode), about 2 per event and a
    dozen per action with these metrics; a gauge is read only when metrics are fetched (REST,
    reporters), from its value here. Reporters show both as numbers (Prometheus: a gauge either
    way), so names, dashboards and alerts stay as they were."""
    kept = Counter()
    group.gauge(name, lambda: kept.count)
    return kept


class DetectionLatency:
    """detection_latency.le_<ms>ms (cumulative: every action at or under the bound), le_inf and
    sum_ms, in the operator's metric group."""

    def __init__(self, metrics):
        group = metrics.add_group("detection_latency")
        self.buckets = [python_counter(group, f"le_{bound}ms") for bound in BUCKETS_MS]
        self.count = python_counter(group, "le_inf")
        self.sum_ms = python_counter(group, "sum_ms")

    def observe(self, latency_ms: int) -> None:
        latency_ms = max(0, latency_ms)
        for counter in self.buckets[bisect_left(BUCKETS_MS, latency_ms) :]:
            counter.inc()
        self.count.inc()
        self.sum_ms.inc(latency_ms)
