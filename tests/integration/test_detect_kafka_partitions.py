"""Kafka mode reading a backlog of several partitions: watermarks are per partition, so one reader
interleaving partitions in fetch-sized chunks makes nothing late.

A topic with 2 partitions is loaded BEFORE the job starts, each partition in ts order over ~120 s
of event time, both ending at the same ts M. The job reads it at parallelism 1 from earliest:
- no event is late, and the actions equal the backtest's (`Replay`) on the events merged in ts
  order (what a per-partition watermark gives);
- the watermark is exactly M - bound afterwards: an event at M - bound is accepted, one at
  M - bound - 1 is late (the backtest's rule: late iff ts < max_ts - bound).
"""

from __future__ import annotations

import json
import random
import time

import pytest

from tests.helpers import wait_for
from tests.integration.detect_data import T0, event, write_inputs
from tests.integration.detect_kafka import (
    RunningJob,
    TopicReader,
    create_topics,
    kafka_args,
    tear_down,
)
from tests.integration.test_detect_file import backtest, without_detected_at

pytestmark = pytest.mark.integration
BOUND_MS = 2_000
SPAN_MS = 120_000
KINDS = ["product_view", "add_to_cart", "checkout_started", "purchase", "login_failed"]


def partition_events(partition: int, users: int = 12, seed: int = 11) -> list[dict]:
    """One partition's events in ts order, spanning [T0, T0 + SPAN_MS], last one at T0 + SPAN_MS."""
    rng = random.Random(seed + partition)
    events = []
    for u in range(users):
        user = f"p{partition}-user-{u}"
        ts = T0 + rng.randrange(0, 2_000)
        i = 0
        while ts < T0 + SPAN_MS:
            kind = rng.choice(KINDS)
            props = {"amount": rng.choice((20, 150))} if kind == "purchase" else {}
            events.append(event(f"{user}-{i:04d}", user, kind, ts, **props))
            ts += rng.choice((0, 1, 300, 900, 1_500, 2_500, 6_000))
            i += 1
    events.append(event(f"p{partition}-end", f"p{partition}-end", "page_view", T0 + SPAN_MS))
    return sorted(events, key=lambda e: (e["ts"], e["event_id"]))


def produce_to(bootstrap: str, topic: str, partition: int, records: list[dict]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, enable_idempotence=True
    )
    for record in records:
        producer.send(
            topic, json.dumps(record).encode(), key=record["user_id"].encode(), partition=partition
        )
    producer.flush()
    producer.close()


@pytest.fixture(scope="module")
def partitioned_run(kafka_bootstrap, kafka_admin, tmp_path_factory):
    directory = tmp_path_factory.mktemp("detect-kafka-partitions")
    parts = [partition_events(0), partition_events(1)]
    rules, _ = write_inputs(directory, [])
    topics = create_topics(kafka_admin, "parts", {"events": 2, "actions": 1, "dlq": 1, "late": 1})
    for p, records in enumerate(parts):
        produce_to(kafka_bootstrap, topics["events"], p, records)
    merged = sorted(parts[0] + parts[1], key=lambda e: (e["ts"], e["event_id"]))
    expected, expected_late = backtest(merged)
    assert expected and not expected_late
    readers = {
        role: TopicReader(kafka_bootstrap, topics[role]) for role in ("actions", "dlq", "late")
    }
    job = RunningJob(
        [
            *kafka_args(kafka_bootstrap, topics, rules),
            "--max-out-of-orderness",
            f"{BOUND_MS}ms",
            "--idle-fire-after",
            "3s",
            "--checkpoint-interval",
            "0",
            "--parallelism",
            "1",
        ],
        directory / "job.log",
    )
    total = len(merged)
    try:

        def backlog_done():
            assert job.alive(), job.log_tail()
            readers["actions"].poll()
            readers["late"].poll()
            try:
                metrics = job.metrics()
            except OSError:
                return False  # the REST API is not up yet
            taken = ("detect.processed", "detect.late", "activity.skipped", "activity.held")
            return sum(metrics.get(name, 0) for name in taken) >= total

        wait_for(backlog_done, timeout=180, interval=0.5, message="the backlog processed")
        # The deadlines still armed fire through idle forcing (3 s); late events mean fewer.
        settle = time.monotonic() + 20
        while len(readers["actions"].poll()) < len(expected) and time.monotonic() < settle:
            time.sleep(0.5)
        result = {
            "expected": expected,
            "actions": list(readers["actions"].poll()),
            "late": list(readers["late"].poll()),
        }
        # Both partitions end at M: the watermark is M - bound. Same partition, in this order.
        m = T0 + SPAN_MS
        boundary = [
            event("at-boundary", "edge-user-a", "add_to_cart", m - BOUND_MS),
            event("below-boundary", "edge-user-b", "add_to_cart", m - BOUND_MS - 1),
        ]
        produce_to(kafka_bootstrap, topics["events"], 0, boundary)
        wait_for(
            lambda: len(readers["late"].poll()) > len(result["late"]),
            timeout=60,
            message="the event below the boundary on the late topic",
        )
        result["metrics"] = wait_for(
            lambda: job.counts_add_up(m := job.metrics(), total + 2) and m,
            timeout=30,
            interval=0.5,
            message="metrics covering the boundary events",
        )
        result["late_after"] = [json.loads(r.value)["event_id"] for r in readers["late"].poll()]
        yield result
    finally:
        tear_down(job, readers, kafka_admin, topics)


def test_backlog_of_two_partitions_has_no_late_events(partitioned_run):
    assert [json.loads(r.value)["event_id"] for r in partitioned_run["late"]] == []


def test_backlog_actions_equal_backtest_of_merged_partitions(partitioned_run):
    got = [without_detected_at(r.value.decode()) for r in partitioned_run["actions"]]
    assert sorted(got) == sorted(partitioned_run["expected"])


def test_event_exactly_at_watermark_is_accepted_one_below_is_late(partitioned_run):
    assert partitioned_run["late_after"] == ["below-boundary"]
    assert partitioned_run["metrics"]["detect.late"] == 1
