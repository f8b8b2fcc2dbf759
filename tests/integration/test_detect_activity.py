"""The JVM activity filter (udfs/jvm CollapseActivity) in a real job: it keeps from Python most
events no rule's filters name, and the actions stay exactly the backtest's.

1. a generated backlog with busy users and out-of-order arrival, plus hand-made users whose
   silence start arrives after later activity (held activity must be released by it), once as an
   event SQL vouches for and once as one only Python decodes (RFC 3339 ts), gives the backtest's
   actions while the filter skips most activity;
2. a silence whose latest activity is held when the input goes idle fires at that activity's
   ts + gap (the held activity reaches Python before its idle forcing does);
3. records in = Python's + skipped + held, in the job's metrics.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
import yaml

from schemas.rules import parse_rules
from tests.helpers import wait_for
from tests.integration.detect_kafka import (
    RunningJob,
    TopicReader,
    create_topics,
    kafka_args,
    produce,
    tear_down,
    wait_for_backlog,
)
from tests.integration.test_detect_file import backtest, without_detected_at
from udfs.engine import Engine
from udfs.generator import GeneratorSettings, generate

pytestmark = pytest.mark.integration
GAP_MS = 3_000
BOUND_MS = 500
IDLE_FIRE_AFTER_S = 2
RULES_YAML = f"""\
rules:
  - id: cart_silence
    pattern:
      type: silence
      start: {{event_type: add_to_cart}}
      unless: {{event_type: [purchase]}}
      gap: {GAP_MS}ms
    action: {{name: cart_nudge, destinations: [kafka]}}
  - id: no_checkout
    pattern:
      type: absence
      start: {{event_type: add_to_cart}}
      missing: {{event_type: checkout_started}}
      within: 2s
    action: {{name: exit_banner, destinations: [kafka]}}
"""


def record(event_id: str, user: str, event_type: str, ts) -> dict:
    return {"event_id": event_id, "user_id": user, "event_type": event_type, "ts": ts}


def rfc3339(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def backlog() -> list[dict]:
    settings = GeneratorSettings(
        users=30, events=6_000, seed=11, events_per_second=300, out_of_order_ms=BOUND_MS - 100
    )
    events = list(generate(settings))
    # Hand-made users, inserted where the stream's time is t: activity at t+100 and t+200
    # arrives before the start at t+50; the silence must fire at t+200+gap, not t+50+gap.
    middle = len(events) // 2
    t = max(e["ts"] for e in events[:middle])
    late_start = [
        record("hm-a1", "held-user", "page_view", t + 100),
        record("hm-a2", "held-user", "scroll", t + 200),
        record("hm-s", "held-user", "add_to_cart", t + 50),
        record("py-a1", "python-user", "page_view", t + 100),
        record("py-a2", "python-user", "scroll", t + 200),
        record("py-s", "python-user", "add_to_cart", rfc3339(t + 50)),
    ]
    return events[:middle] + late_start + events[middle:]


@pytest.fixture(scope="module")
def activity_run(kafka_bootstrap, kafka_admin, tmp_path_factory):
    directory = tmp_path_factory.mktemp("detect-activity")
    rules = directory / "rules.yaml"
    rules.write_text(RULES_YAML)
    events = backlog()
    expected, _ = backtest(events, RULES_YAML, BOUND_MS)
    topics = create_topics(
        kafka_admin, "activity", {"events": 2, "actions": 1, "dlq": 1, "late": 1}
    )
    produce(kafka_bootstrap, topics["events"], [json.dumps(e) for e in events])
    readers = {role: TopicReader(kafka_bootstrap, topics[role]) for role in ("actions", "late")}
    job = RunningJob(
        [
            *kafka_args(kafka_bootstrap, topics, rules, group="activity"),
            "--max-out-of-orderness",
            f"{BOUND_MS}ms",
            "--idle-fire-after",
            f"{IDLE_FIRE_AFTER_S}s",
            "--parallelism",
            "2",
        ],
        directory / "job.log",
    )
    result = {"events": events, "expected": expected}
    try:
        result["actions"] = wait_for_backlog(job, readers["actions"], len(expected))

        # Live: a start, then activity every 100 ms up to +1500 ms, then nothing at all.
        now = int(time.time() * 1000)
        live = [record("live-s", "idle-user", "add_to_cart", now)]
        live += [
            record(f"live-a{k}", "idle-user", "page_view", now + 100 * k) for k in range(1, 16)
        ]
        produce(kafka_bootstrap, topics["events"], [json.dumps(e) for e in live])

        def idle_silence():
            return [
                json.loads(r.value)
                for r in readers["actions"].poll()
                if r.key == b"idle-user" and json.loads(r.value)["rule_id"] == "cart_silence"
            ]

        result["idle_silence"] = wait_for(idle_silence, timeout=60, interval=0.2)[0]
        result["live_last_ts"] = now + 1_500
        total = len(events) + len(live)
        result["total"] = total

        def counted():
            metrics = job.metrics()
            return job.records_in(metrics) == total and metrics

        result["metrics"] = wait_for(counted, timeout=30, interval=0.5, message="metrics")
        result["late"] = readers["late"].poll()
        yield result
    finally:
        tear_down(job, readers, kafka_admin, topics)


def test_actions_equal_backtest(activity_run):
    got = sorted(without_detected_at(r.value.decode()) for r in activity_run["actions"])
    assert got == sorted(activity_run["expected"])
    assert activity_run["late"] == []


def test_start_arriving_after_activity_releases_it(activity_run):
    silences = {
        a["user_id"]: a["trigger_ts"]
        for a in map(json.loads, activity_run["expected"])
        if a["rule_id"] == "cart_silence" and a["user_id"] in ("held-user", "python-user")
    }
    by_id = {e["event_id"]: e for e in activity_run["events"]}
    # The backtest's answer (what the job matched above) is the latest activity's ts + gap.
    assert silences == {
        "held-user": by_id["hm-a2"]["ts"] + GAP_MS,
        "python-user": by_id["py-a2"]["ts"] + GAP_MS,
    }


def test_filter_keeps_most_activity_from_python(activity_run):
    metrics = activity_run["metrics"]
    activity = sum(
        1
        for e in activity_run["events"]
        if e["event_type"] not in Engine(parse_rules(yaml.safe_load(RULES_YAML))).filtered_types
    )
    assert metrics["activity.skipped"] > activity // 2
    assert metrics["detect.events_in"] < activity_run["total"] - activity // 2


def test_idle_silence_fires_after_the_held_latest_activity(activity_run):
    action = activity_run["idle_silence"]
    assert action["trigger_ts"] == activity_run["live_last_ts"] + GAP_MS


def test_records_add_up(activity_run):
    metrics = activity_run["metrics"]
    python = metrics["detect.processed"] + metrics.get("detect.invalid", 0) + metrics["detect.late"]
    assert python == metrics["detect.events_in"]
    assert RunningJob.records_in(metrics) == activity_run["total"]
