"""Exactly-once: a job killed (SIGKILL, no clean shutdown) and restarted from its last checkpoint
gives each action once to a read_committed consumer, and the set equals the backtest's.

Part 1 of the input is consumed and checkpointed, the job is killed, part 2 is produced, and a new
job restores the checkpoint. Part 2 has its own users and later timestamps, so part 1 users whose
deadlines idle liveness fired before the kill get no later events (which would be late for them).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import wait_for
from tests.integration.detect_data import generate, write_inputs
from tests.integration.detect_kafka import (
    RunningJob,
    TopicReader,
    create_topics,
    kafka_args,
    produce,
)
from tests.integration.test_detect_file import backtest, without_detected_at

pytestmark = pytest.mark.integration


def second_part(first_valid: list[dict]) -> list[str]:
    """Users and ids of their own, timestamps after the first part's."""
    lines, valid = generate(users=8, events_per_user=25, seed=11, late=0, invalid=0)
    shift = max(e["ts"] for e in first_valid) - min(e["ts"] for e in valid) + 10_000
    out = []
    for record in valid:
        record = dict(record)
        record["ts"] += shift
        record["user_id"] = "p2-" + record["user_id"]
        record["event_id"] = "p2-" + record["event_id"]
        out.append(json.dumps(record))
    return out


def latest_checkpoint(directory: Path) -> Path | None:
    done = [m.parent for m in directory.glob("*/chk-*/_metadata")]
    return max(done, key=lambda p: int(p.name.split("-")[1])) if done else None


def test_restart_from_checkpoint_emits_each_action_once(kafka_bootstrap, kafka_admin, tmp_path):
    part1, valid1 = generate(users=10, events_per_user=25, late=0, invalid=0)
    part2 = second_part(valid1)
    rules, _ = write_inputs(tmp_path, part1)
    topics = create_topics(kafka_admin, "eos", {"events": 1, "actions": 1, "dlq": 1, "late": 1})
    checkpoints = tmp_path / "checkpoints"
    args = [
        *kafka_args(kafka_bootstrap, topics, rules, group="eos"),
        "--delivery", "exactly-once", "--transactional-id-prefix", f"eos-{topics['events']}",
        "--checkpoint-interval", "2s", "--checkpoint-dir", str(checkpoints),
        "--idle-fire-after", "3s", "--parallelism", "1",
    ]  # fmt: skip
    expected, _ = backtest([json.loads(line) for line in part1 + part2])
    actions = TopicReader(kafka_bootstrap, topics["actions"])
    produce(kafka_bootstrap, topics["events"], part1)
    first = RunningJob(args, tmp_path / "job1.log")
    second = None
    try:
        wait_for(
            lambda: first.alive() and len(actions.poll()) >= 5 and latest_checkpoint(checkpoints),
            timeout=120, interval=0.5, message="committed actions and a checkpoint",
        )  # fmt: skip
        first.stop(kill=True)
        checkpoint = latest_checkpoint(checkpoints)
        before_restart = len(actions.poll())
        produce(kafka_bootstrap, topics["events"], part2)
        second = RunningJob([*args, "--from-checkpoint", str(checkpoint)], tmp_path / "job2.log")

        def all_actions():
            assert second.alive(), second.log_tail()
            return len(actions.poll()) >= len(expected)

        wait_for(all_actions, timeout=150, interval=0.5, message="every action after restart")
        # A checkpoint later, nothing more arrives (duplicates would come with it).
        seen = second.checkpoints_completed()
        wait_for(lambda: second.checkpoints_completed() > seen + 1, timeout=30)
        got = [without_detected_at(r.value.decode()) for r in actions.poll()]
        assert before_restart > 0
        ids = [json.loads(g)["action_id"] for g in got]
        assert len(ids) == len(set(ids)), "an action was delivered twice"
        assert sorted(got) == sorted(expected)
    finally:
        first.stop(kill=True)
        if second is not None:
            second.stop()
        actions.close()
        kafka_admin.delete_topics(list(topics.values()))
