"""The detect operator's detection-latency buckets are cumulative, like a Prometheus histogram's."""

from __future__ import annotations

from jobs.operators.metrics import BUCKETS_MS, DetectionLatency
from udfs.host import Counter


class Group:
    def __init__(self):
        self.counters: dict[str, Counter] = {}

    def add_group(self, name):
        assert name == "detection_latency"
        return self

    def counter(self, name):
        return self.counters.setdefault(name, Counter())


def test_each_action_counts_in_every_bucket_at_or_above_its_latency():
    group = Group()
    latency = DetectionLatency(group)
    for ms in (0, 25, 26, 499, 500, 501, 40_000, -3):
        latency.observe(ms)
    counts = {name: c.count for name, c in group.counters.items()}
    assert counts["le_25ms"] == 3  # 0, 25 and -3 (a clock behind event time counts as 0)
    assert counts["le_50ms"] == 4 and counts["le_200ms"] == 4
    assert counts["le_500ms"] == 6 and counts["le_1000ms"] == 7
    assert counts[f"le_{BUCKETS_MS[-1]}ms"] == 7 and counts["le_inf"] == 8
    assert counts["sum_ms"] == 25 + 26 + 499 + 500 + 501 + 40_000
