"""Metrics of the detect operator beyond counters of records: the detection latency of actions
(`detected_at - trigger_ts`, wall clock against event time) as cumulative bucket counters, the
shape of a Prometheus histogram, so alerts and dashboards can take quantiles across subtasks.
"""

from __future__ import annotations

from bisect import bisect_left

#: Upper bounds of the buckets, ms (the last, +Inf, is `le_inf`).
BUCKETS_MS = (25, 50, 100, 200, 500, 1_000, 2_000, 5_000, 30_000)


class DetectionLatency:
    """detection_latency.le_<ms>ms (cumulative: every action at or under the bound), le_inf and
    sum_ms, in the operator's metric group."""

    def __init__(self, metrics):
        group = metrics.add_group("detection_latency")
        self.buckets = [group.counter(f"le_{bound}ms") for bound in BUCKETS_MS]
        self.count = group.counter("le_inf")
        self.sum_ms = group.counter("sum_ms")

    def observe(self, latency_ms: int) -> None:
        latency_ms = max(0, latency_ms)
        for counter in self.buckets[bisect_left(BUCKETS_MS, latency_ms) :]:
            counter.inc()
        self.count.inc()
        self.sum_ms.inc(latency_ms)
