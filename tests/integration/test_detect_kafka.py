"""Kafka mode of `moments run` end to end against a real broker, one job run shared by all tests:

1. a generated backlog (every pattern type, invalid records) gives the backtest's actions, keyed
   by user_id; the deadlines still armed when the backlog ends fire through idle liveness;
2. events produced afterwards below the watermark go to the late topic;
3. a silence started at wall-clock time "now" fires within gap + idle_fire_after although nothing
   more arrives on any partition;
4. events in = processed + dead-lettered + late (+ skipped or held by the JVM activity filter),
   in the job's metrics and in the topics.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.helpers import wait_for
from tests.integration.detect_data import generate, write_inputs
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

pytestmark = pytest.mark.integration
IDLE_FIRE_AFTER_S = 3
SILENCE_GAP_S = 5  # cart_silence in detect_data.RULES_YAML


@pytest.fixture(scope="module")
def kafka_run(kafka_bootstrap, kafka_admin, tmp_path_factory):
    directory = tmp_path_factory.mktemp("detect-kafka")
    lines, valid = generate(users=15, events_per_user=30, late=0, invalid=5)
    rules, _ = write_inputs(directory, lines)
    topics = create_topics(kafka_admin, "detect", {"events": 1, "actions": 2, "dlq": 1, "late": 1})
    produce(kafka_bootstrap, topics["events"], lines)
    readers = {
        role: TopicReader(kafka_bootstrap, topics[role]) for role in ("actions", "dlq", "late")
    }
    job = RunningJob(
        [
            *kafka_args(kafka_bootstrap, topics, rules),
            "--max-out-of-orderness",
            "2s",
            "--idle-fire-after",
            f"{IDLE_FIRE_AFTER_S}s",
            "--checkpoint-interval",
            "2s",
            "--parallelism",
            "2",
        ],
        directory / "job.log",
    )
    expected_actions, _ = backtest(valid)
    result = {"lines": lines, "valid": valid, "expected": expected_actions, "job": job}
    try:
        result["actions"] = wait_for_backlog(job, readers["actions"], len(expected_actions))

        max_ts = max(e["ts"] for e in valid)
        late_lines = [
            json.dumps(
                {
                    "event_id": f"late-{i}",
                    "user_id": f"user-{i}",
                    "event_type": "add_to_cart",
                    "ts": max_ts - 60_000 - i,
                }
            )
            for i in range(4)
        ]
        produce(kafka_bootstrap, topics["events"], late_lines)
        wait_for(lambda: len(readers["late"].poll()) >= 4, timeout=60, message="late events")

        started = time.time()
        now_ms = int(started * 1000)
        live = [
            json.dumps(
                {
                    "event_id": "live-1",
                    "user_id": "live-user",
                    "event_type": "add_to_cart",
                    "ts": now_ms,
                }
            )
        ]
        # Three buffered events of one user, then nothing: idle forcing must match all three
        # in one go (login_trouble), not one per idle_fire_after.
        live += [
            json.dumps(
                {
                    "event_id": f"burst-{k}",
                    "user_id": "burst-user",
                    "event_type": "login_failed",
                    "ts": now_ms + k,
                }
            )
            for k in range(3)
        ]
        produce(kafka_bootstrap, topics["events"], live)

        def burst_fired():
            return [r for r in readers["actions"].poll() if r.key == b"burst-user"]

        wait_for(burst_fired, timeout=60, interval=0.2, message="the burst's count action")
        result["burst_fired_after_s"] = time.time() - started

        def live_fired():
            return [
                r
                for r in readers["actions"].poll()
                if r.key == b"live-user" and json.loads(r.value)["rule_id"] == "cart_silence"
            ]

        wait_for(live_fired, timeout=60, interval=0.2, message="the live silence action")
        result["live_fired_after_s"] = time.time() - started
        result["live_action"] = json.loads(live_fired()[0].value)
        result["live_ts"] = now_ms
        result["actions_after"] = list(readers["actions"].records)
        result["dlq"] = readers["dlq"].poll()
        result["late"] = readers["late"].poll()
        total = len(lines) + len(late_lines) + len(live)
        result["total_in"] = total
        result["metrics"] = wait_for(
            lambda: job.counts_add_up(m := job.metrics(), total) and m,
            timeout=30,
            interval=0.5,
            message="metrics covering every record",
        )
        yield result
    finally:
        tear_down(job, readers, kafka_admin, topics)


def test_actions_equal_backtest_keyed_by_user(kafka_run):
    got = [without_detected_at(r.value.decode()) for r in kafka_run["actions"]]
    assert sorted(got) == sorted(kafka_run["expected"])
    for record in kafka_run["actions"]:
        assert record.key.decode() == json.loads(record.value)["user_id"]
        assert json.loads(record.value)["detected_at"] > 1_700_000_000_000  # wall clock


def test_dead_letters_carry_raw_reason_and_offset(kafka_run):
    dlq = [json.loads(r.value) for r in kafka_run["dlq"]]
    assert len(dlq) == 5
    for record in dlq:
        assert record["reason"] and record["topic"].endswith(".events")
        assert record["partition"] == 0
        assert kafka_run["lines"][record["offset"]] == record["raw"]


def test_late_events_go_to_the_late_topic(kafka_run):
    late = sorted(json.loads(r.value)["event_id"] for r in kafka_run["late"])
    assert late == [f"late-{i}" for i in range(4)]
    late_users = {r.key for r in kafka_run["late"]}
    assert late_users == {f"user-{i}".encode() for i in range(4)}


def test_idle_stream_still_fires_pending_silence(kafka_run):
    action = kafka_run["live_action"]
    assert action["trigger_ts"] == kafka_run["live_ts"] + SILENCE_GAP_S * 1000
    # Fires once wall-clock passes the deadline by idle_fire_after (plus polling slack).
    assert kafka_run["live_fired_after_s"] >= SILENCE_GAP_S
    assert kafka_run["live_fired_after_s"] < SILENCE_GAP_S + IDLE_FIRE_AFTER_S + 5


def test_idle_forcing_matches_every_buffered_event_at_once(kafka_run):
    # Forced one buffered event per idle_fire_after, the third login would wait 3 x 3 s.
    assert kafka_run["burst_fired_after_s"] < 2 * IDLE_FIRE_AFTER_S + 2


def test_nothing_is_lost(kafka_run):
    m = kafka_run["metrics"]
    total = kafka_run["total_in"]
    assert RunningJob.records_in(m) == total
    assert m["detect.invalid"] == len(kafka_run["dlq"]) == 5
    assert m["detect.late"] == len(kafka_run["late"]) == 4
    python = m["detect.processed"] + m["detect.invalid"] + m["detect.late"]
    assert python == m["detect.events_in"]
    assert python + m["activity.skipped"] + m["activity.held"] + m["release.held"] == total
    per_rule = sum(v for k, v in m.items() if k.startswith("detect.rule."))
    assert per_rule == len(kafka_run["actions_after"])
