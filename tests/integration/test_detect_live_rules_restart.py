"""Live rules survive a crash (issue 17): the versions a Kafka job received are in its checkpoints,
so a job killed (SIGKILL) after v1 and v2 were applied and restored with --from-checkpoint applies
the same versions, although the rules topic it restarts on is empty (deleted and recreated: only
the checkpoint's broadcast state can give the versions back). v2's explicit effective_from T is
in the middle of the events: the first half (all before T) goes to the first job, the second half
to the restored one. The actions equal `moments backtest --rules-history` of the whole history
(as sets, without detected_at: at-least-once may repeat records), every action at or after T
carries v2, and the restored job read on from the checkpoint's offsets: what the first job sent
is not sent again."""

from __future__ import annotations

import json

import pytest

from moments_testing import launcher
from tests.helpers import wait_for
from tests.integration.detect_data import RULES_YAML, generate
from tests.integration.detect_kafka import RunningJob, TopicReader, create_topics, produce
from tests.integration.test_detect_exactly_once import latest_checkpoint
from tests.integration.test_detect_live_rules import (
    V2_RULES,
    _publish_raw,
    _record,
    _record_value,
    _statuses,
    split_at_switch,
)

pytestmark = pytest.mark.integration
COMPACT = {"cleanup.policy": "compact"}


def _inputs(directory):
    """(v1, v2) records, T, the two halves of the events and the backtest's actions."""
    lines, _ = generate(users=10, events_per_user=30, bound_ms=2_000, late=0, invalid=0)
    switch_at, halves = split_at_switch(lines)
    v1, v2 = _record_value("v1", None, RULES_YAML), _record_value("v2", switch_at, V2_RULES)
    history = directory / "history.jsonl"
    history.write_text(f"{v1}\n{v2}\n")
    events = directory / "events.jsonl"
    events.write_text("\n".join([*halves[0], *halves[1]]) + "\n")
    out = directory / "expected.jsonl"
    result = launcher.run_moments(
        "backtest", "--rules-history", str(history), "--events", str(events), "--out", str(out),
        "--max-out-of-orderness", "2s", timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    expected = {_record(line) for line in out.read_text().splitlines() if line.strip()}
    assert {json.loads(a)["rules_version"] for a in expected} == {"v1", "v2"}
    return (v1, v2), switch_at, halves, expected


def _recreate_empty(admin, bootstrap: str, topic: str) -> None:
    """Delete `topic` and create it again, compacted and empty (deletion is asynchronous: the
    creation is retried while the old topic is still being removed)."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin.delete_topics([topic], timeout_ms=30000)

    def created():
        admin.create_topics([NewTopic(topic, 1, 1, topic_configs=COMPACT)], timeout_ms=30000)
        return True

    wait_for(created, timeout=60, interval=0.5, ignore=(TopicAlreadyExistsError,))
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        partition = TopicPartition(topic, 0)
        ends = wait_for(
            lambda: consumer.end_offsets([partition]), timeout=30, interval=0.5, ignore=(Exception,)
        )
        assert ends[partition] == 0, ends
    finally:
        consumer.close()


def test_a_restart_applies_the_versions_of_the_checkpoint(kafka_bootstrap, kafka_admin, tmp_path):
    (v1, v2), switch_at, halves, expected = _inputs(tmp_path)
    topics = create_topics(
        kafka_admin, "live-rules-restart",
        {"events": 1, "actions": 1, "dlq": 1, "late": 1, "suppressed": 1, "outcomes": 1,
         "rules": 1, "status": 1},
        configs={"rules": COMPACT},
    )  # fmt: skip
    checkpoints = tmp_path / "checkpoints"
    args = [
        "--rules-topic", topics["rules"], "--rules-status-topic", topics["status"],
        "--bootstrap-servers", kafka_bootstrap,
        "--events-topic", topics["events"], "--actions-topic", topics["actions"],
        "--dlq-topic", topics["dlq"], "--late-topic", topics["late"],
        "--suppressed-topic", topics["suppressed"], "--outcomes-topic", topics["outcomes"],
        "--group-id", f"live-restart-{topics['events']}", "--starting-offsets", "earliest",
        "--max-out-of-orderness", "2s", "--idle-fire-after", "off", "--parallelism", "1",
        "--checkpoint-interval", "2s", "--checkpoint-dir", str(checkpoints),
    ]  # fmt: skip
    readers = {role: TopicReader(kafka_bootstrap, topics[role]) for role in ("actions", "status")}
    first = RunningJob(args, tmp_path / "job1.log")
    second = None
    try:
        _publish_raw(kafka_bootstrap, topics["rules"], v1)
        _publish_raw(kafka_bootstrap, topics["rules"], v2)
        produce(kafka_bootstrap, topics["events"], halves[0])

        def status_of(version: str):
            assert first.alive(), first.log_tail()
            return _statuses(readers["status"]).get(version)

        applied = wait_for(lambda: status_of("v2"), timeout=150, interval=0.5, message="v2")
        assert applied["status"] == "applied" and applied["applied_from"] == switch_at, applied
        assert status_of("v1")["status"] == "applied"

        # The first half's actions are out and two checkpoints completed since the last one
        # arrived: the checkpoint holds the versions, and nothing is sent after it.
        seen = {"actions": -1, "checkpoints": 0}

        def settled():
            assert first.alive(), first.log_tail()
            count, done = len(readers["actions"].poll()), first.checkpoints_completed()
            if count != seen["actions"]:
                seen.update(actions=count, checkpoints=done)
                return False
            return count > 0 and done >= seen["checkpoints"] + 2

        wait_for(settled, timeout=120, interval=0.5, message="the first half's actions")
        first.stop(kill=True)
        before = {_record(r.value) for r in readers["actions"].poll()}
        assert all(json.loads(a)["trigger_ts"] < switch_at for a in before), before
        assert before <= expected, sorted(before - expected)[:3]
        statuses = len(readers["status"].poll())
        checkpoint = latest_checkpoint(checkpoints)
        assert checkpoint is not None

        # Only the checkpoint can give the versions back: the rules topic is empty now.
        _recreate_empty(kafka_admin, kafka_bootstrap, topics["rules"])
        second = RunningJob([*args, "--from-checkpoint", str(checkpoint)], tmp_path / "job2.log")
        produce(kafka_bootstrap, topics["events"], halves[1])

        def complete():
            assert second.alive(), second.log_tail()
            return len({_record(r.value) for r in readers["actions"].poll()}) >= len(expected)

        try:
            wait_for(complete, timeout=150, interval=0.5, message="every action after restart")
        except AssertionError:
            pass  # the comparison below says what is missing or extra
        got = {_record(r.value) for r in readers["actions"].poll()}
        missing, extra = expected - got, got - expected
        assert not missing and not extra, (
            len(missing), len(extra), sorted(missing)[:3], sorted(extra)[:3], second.log_tail()
        )  # fmt: skip
        after = [json.loads(a) for a in got if json.loads(a)["trigger_ts"] >= switch_at]
        assert after and {a["rules_version"] for a in after} == {"v2"}
        # The restored job read on from the checkpoint's offsets: nothing sent before the kill
        # is sent again, and it read no rules record (no new status row).
        sent = [json.loads(r.value)["action_id"] for r in readers["actions"].records]
        assert all(sent.count(json.loads(a)["action_id"]) == 1 for a in before), sent
        assert len(readers["status"].poll()) == statuses, readers["status"].values()[statuses:]
        assert second.alive(), second.log_tail()
    finally:
        first.stop(kill=True)
        if second is not None:
            second.stop()
        for reader in readers.values():
            reader.close()
        kafka_admin.delete_topics(list(topics.values()))
