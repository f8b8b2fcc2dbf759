"""The enrichment's metrics in a thread-mode operator are Flink counters only: a Python gauge
there is called by Flink's metrics thread into the task's interpreter, which crashed the
TaskManager (SIGSEGV in libpython). The async layout (process mode) keeps its latest-lookup
gauge, which PyFlink reports from the Python worker."""

from __future__ import annotations

from jobs.operators.enrich import EnrichmentMetrics
from udfs.crm import LookupResult
from udfs.host import Counter


class Group:
    def __init__(self):
        self.counters: dict[str, Counter] = {}
        self.gauges: dict[str, object] = {}

    def add_group(self, name):
        return self

    def counter(self, name):
        return self.counters.setdefault(name, Counter())

    def gauge(self, name, value):
        self.gauges[name] = value


class RuntimeContext:
    def __init__(self):
        self.group = Group()

    def get_metrics_group(self):
        return self.group


def test_thread_mode_layouts_register_no_python_gauge():
    runtime = RuntimeContext()
    metrics = EnrichmentMetrics(runtime, group="enrich")
    metrics.record(LookupResult("ok", {"tier": "gold"}, latency_ms=12.6))
    metrics.record(LookupResult("missing", latency_ms=3))
    assert runtime.group.gauges == {}
    counts = {name: counter.count for name, counter in runtime.group.counters.items()}
    assert counts["ok"] == 1 and counts["missing"] == 1 and counts["unavailable"] == 0
    assert counts["crm_latency_ms_total"] == 12 + 3


def test_the_async_layout_keeps_its_latest_lookup_gauge():
    runtime = RuntimeContext()
    metrics = EnrichmentMetrics(runtime, latest_gauge=True)
    metrics.record(LookupResult("ok", {}, latency_ms=7))
    assert runtime.group.gauges["crm_latency_ms"]() == 7
