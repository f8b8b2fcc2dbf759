"""bench/run.py's cost figures without a job: CPU of a process tree interpolated over the measured
interval, Python calls per event from the operator's counters, the settled REST read."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from bench import harness, run


class FakeJob:
    def __init__(self, samples=None, reads=()):
        self.cpu = harness.CpuSampler(os.getpid())
        self.cpu.samples = list(samples or [])
        self.reads = list(reads)

    def user_metrics(self):
        return self.reads.pop(0) if len(self.reads) > 1 else self.reads[0]


def test_interpolate_is_linear_between_samples_and_flat_outside():
    samples = [(1_000, 1.0), (1_250, 2.0), (1_500, 2.0)]
    assert harness.interpolate(samples, 1_125) == pytest.approx(1.5)
    assert harness.interpolate(samples, 1_400) == pytest.approx(2.0)
    assert harness.interpolate(samples, 500) == 1.0
    assert harness.interpolate(samples, 9_000) == 2.0
    assert harness.interpolate([], 1_000) is None


def test_cpu_cost_takes_the_measured_interval_only():
    # 1 CPU s per wall-clock s from 0 to 10 s, then idle until 20 s (the wait that ends a run).
    samples = [(t, min(t, 10_000) / 1000) for t in range(0, 20_001, 250)]
    cost = run.cpu_cost(FakeJob(samples), 2_000, 6_000, events=8_000)
    assert cost["cpu_s"] == pytest.approx(4.0)
    assert cost["cpu_ms_per_1k_events"] == pytest.approx(500.0)
    assert cost["cpu_cores"] == pytest.approx(1.0)
    assert run.cpu_cost(FakeJob(samples), 2_000, None, events=8_000)["cpu_s"] is None


def test_cpu_sampler_keeps_the_cpu_of_a_child_that_exited():
    busy = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"
    script = (
        "import subprocess, sys, time\n"
        f"subprocess.run([sys.executable, '-c', {busy!r}])\n"
        "print('done', flush=True)\ntime.sleep(2)"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    sampler = harness.CpuSampler(parent.pid, interval_s=0.05)
    sampler.start()
    try:
        assert parent.stdout.readline().strip() == "done"  # the child burnt 0.3 s and exited
        time.sleep(0.2)
        sampler.stop()
    finally:
        parent.kill()
        parent.wait(timeout=10)
    values = [v for _, v in sampler.samples]
    assert values[-1] - values[0] >= 0.25
    assert values == sorted(values)


def test_python_calls_per_event_counts_elements_and_timers():
    metrics = {"detect.events_in": 80_000.0, "detect.timers": 70_000.0}
    assert run.python_calls(metrics, 300_000) == {
        "elements": 80_000,
        "timers": 70_000,
        "processing_timers": None,
        "per_event": 0.5,
    }
    # Released events come many to a record: the calls are the records in.
    metrics |= {"detect.numRecordsIn": 40_000.0, "detect.processing_timers": 5_000.0}
    calls = run.python_calls(metrics, 300_000)
    assert calls["elements"] == 40_000 and calls["processing_timers"] == 5_000
    assert calls["per_event"] == 0.367
    assert run.python_calls({"error": "down"}, 300_000)["per_event"] is None


def test_settled_metrics_waits_for_two_equal_current_reads(monkeypatch):
    monkeypatch.setattr(run.time, "sleep", lambda s: None)
    stale = {"detect.events_in": 10.0}
    fresh = {"detect.events_in": 12.0, "detect.timers": 3.0}
    job = FakeJob(reads=[{}, stale, fresh, fresh])
    assert run.settled_metrics(job) == fresh


def test_the_detect_operator_counts_every_timer_callback():
    from tests.unit.engine.test_ordering import ALL_RULES
    from tests.unit.jobs.test_detect_moments import Operator

    operator = Operator(ALL_RULES, event_time_detected_at=True)
    for n, user in enumerate(("u1", "u2", "u3")):
        operator.element(f"e{n}", 10 + n, "a", user=user)
    fired = 0
    for timestamp in operator.service.advance_watermark(10_000_000):
        fired += 1
        list(operator.function.on_timer(timestamp, operator.service))
    assert fired > 0
    assert operator.count("timers") == fired
