"""Guard rails against poisoned input in `moments run` (DESIGN.md "Event contract"): a record with
ts in the year 9999, past now + 1h or negative, an id of 0 or 513 bytes, or over 1 MiB is
dead-lettered with its reason and changes no other action, in file mode and in Kafka mode (where
the JVM decoder and the rowtime must not let it move the partition's watermark).

Each run's actions are compared with the backtest of the clean events alone; the Kafka run reads
the poisoned records first and the rest only after they were dead-lettered, so a watermark moved
by them would make every later event late.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.helpers import wait_for
from tests.integration.detect_data import event, generate, poisoned_records, write_inputs
from tests.integration.detect_kafka import (
    RunningJob,
    TopicReader,
    create_topics,
    kafka_args,
    produce,
    tear_down,
    wait_for_backlog,
)
from tests.integration.test_detect_file import BOUND_MS, backtest, run_moments, without_detected_at
from udfs.decode import MAX_DEAD_LETTER_RAW_CHARS, InvalidEvent, decode_event

pytestmark = pytest.mark.integration
AT = 7  # the poisoned records go in after this many lines: every later event is exposed


@pytest.fixture(scope="module")
def inputs():
    lines, valid = generate(users=10, events_per_user=30, late=0, invalid=2)
    poisoned = poisoned_records(time.time_ns() // 1_000_000)
    return lines, valid, poisoned


def _valid(line: str) -> bool:
    try:
        decode_event(line)
    except InvalidEvent:
        return False
    return True


def _check_dead_letters(dlq: list[dict], poisoned: list[tuple[str, str]]) -> None:
    """Every poisoned record is dead-lettered once, with its reason and (cut) raw value."""
    by_raw = {d["raw"]: d for d in dlq}
    for raw, why in poisoned:
        kept = raw[:MAX_DEAD_LETTER_RAW_CHARS]
        assert kept in by_raw, f"not dead-lettered: {raw[:100]}"
        assert why in by_raw[kept]["reason"], by_raw[kept]["reason"]
        assert by_raw[kept].get("raw_bytes") == (len(raw.encode()) if kept != raw else None)


def test_unguarded_the_year_9999_would_change_the_actions(inputs):
    """The comparison below can fail: without the future bound, the year-9999 record alone makes
    the events after it late and changes the backtest's actions."""
    lines, valid, poisoned = inputs
    clean, _ = backtest(valid)
    year_9999 = decode_event(poisoned[0][0], max_future_ms=None).model_dump()
    unguarded, late = backtest(valid[:AT] + [year_9999] + valid[AT:])
    assert sorted(unguarded) != sorted(clean) and len(late) > len(valid) // 2


def test_file_mode_dead_letters_poisoned_records_and_keeps_every_action(inputs, tmp_path):
    lines, valid, poisoned = inputs
    with_poison = lines[:AT] + [raw for raw, _ in poisoned] + lines[AT:]
    rules, events = write_inputs(tmp_path, with_poison)
    out, dlq = tmp_path / "actions.jsonl", tmp_path / "dlq.jsonl"
    result = run_moments(
        *("--rules", str(rules), "--events", str(events), "--out", str(out)),
        *("--dlq-out", str(dlq), "--max-out-of-orderness", f"{BOUND_MS}ms", "--parallelism", "2"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    expected, _ = backtest(valid)
    got = [without_detected_at(line) for line in out.read_text().splitlines()]
    assert sorted(got) == sorted(expected)
    dead = [json.loads(line) for line in dlq.read_text().splitlines()]
    _check_dead_letters(dead, poisoned)
    invalid = len(with_poison) - len(valid)
    assert len(dead) == invalid == len(poisoned) + 2
    assert (
        f"{len(with_poison)} events in, {len(valid)} processed, 0 late, {invalid} dead-lettered"
        in result.stderr
    )


@pytest.fixture(scope="module")
def kafka_run(inputs, kafka_bootstrap, kafka_admin, tmp_path_factory):
    lines, valid, poisoned = inputs
    directory = tmp_path_factory.mktemp("detect-guard-rails")
    rules, _ = write_inputs(directory, lines)
    big = {"max.message.bytes": str(4 << 20)}  # the record over 1 MiB must reach the job
    topics = create_topics(
        kafka_admin,
        "guard",
        {"events": 1, "actions": 2, "dlq": 1, "late": 1},
        configs={"events": big},
    )
    readers = {
        role: TopicReader(kafka_bootstrap, topics[role]) for role in ("actions", "dlq", "late")
    }
    # No idle forcing: only the watermark fires deadlines; a last event a day later ends them.
    flush = event("flush", "flush-user", "page_view", max(e["ts"] for e in valid) + 86_400_000)
    job = RunningJob(
        [
            *kafka_args(kafka_bootstrap, topics, rules, group="guard"),
            *("--max-out-of-orderness", f"{BOUND_MS}ms", "--idle-fire-after", "off"),
            *("--parallelism", "2"),
        ],
        directory / "job.log",
    )
    try:
        first = lines[:AT] + [raw for raw, _ in poisoned]
        produce(kafka_bootstrap, topics["events"], first, max_request_size=4 << 20)
        dead_first = sum(1 for line in first if not _valid(line))

        def first_dead_lettered():
            assert job.alive(), job.log_tail()
            return len(readers["dlq"].poll()) >= dead_first

        wait_for(first_dead_lettered, timeout=120, interval=0.5, message="poisoned records")
        # The watermark has passed the clean events read so far: had a poisoned record moved
        # it, it would now be far ahead and every event produced below would be late.
        clean_max = max(json.loads(line)["ts"] for line in lines[:AT] if _valid(line))

        def watermark_moved():
            assert job.alive(), job.log_tail()
            return (job.metric_min("detect.currentInputWatermark") or 0) >= clean_max - BOUND_MS

        wait_for(watermark_moved, timeout=60, interval=0.5, message="the watermark")
        rest = lines[AT:] + [json.dumps(flush)]
        produce(kafka_bootstrap, topics["events"], rest)
        expected, _ = backtest(valid + [flush])
        wait_for_backlog(job, readers["actions"], len(expected))
        total = len(first) + len(rest)
        metrics = wait_for(
            lambda: job.counts_add_up(m := job.metrics(), total) and m,
            timeout=60,
            interval=0.5,
            message="metrics covering every record",
        )
        yield {
            "expected": expected,
            "actions": [r.value.decode() for r in readers["actions"].poll()],
            "dlq": [json.loads(r.value) for r in readers["dlq"].poll()],
            "late": readers["late"].poll(),
            "metrics": metrics,
            "total": total,
            "invalid": total - len(valid) - 1,
            "poisoned": poisoned,
            "topic": topics["events"],
        }
    finally:
        tear_down(job, readers, kafka_admin, topics)


def test_kafka_mode_keeps_every_action(kafka_run):
    got = [without_detected_at(value) for value in kafka_run["actions"]]
    assert sorted(got) == sorted(kafka_run["expected"])
    assert kafka_run["late"] == []


def test_kafka_mode_dead_letters_poisoned_records_with_their_reason(kafka_run):
    dlq = kafka_run["dlq"]
    _check_dead_letters(dlq, kafka_run["poisoned"])
    assert len(dlq) == kafka_run["invalid"]
    assert {(d["topic"], d["partition"]) for d in dlq} == {(kafka_run["topic"], 0)}


def test_kafka_mode_counts_add_up(kafka_run):
    m = kafka_run["metrics"]
    assert m["detect.invalid"] == kafka_run["invalid"] and m["detect.late"] == 0
    python = m["detect.processed"] + m["detect.invalid"] + m["detect.late"]
    assert python == m["detect.events_in"]
    assert python + m.get("activity.skipped", 0) + m.get("activity.held", 0) == kafka_run["total"]
