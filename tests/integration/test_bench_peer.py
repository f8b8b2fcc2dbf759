"""bench/peer.py, the MATCH_RECOGNIZE peer of the benchmark, on a crafted stream: its matches are
what Flink SQL's pattern semantics give, and `compare` against `moments backtest` of the same
events shows where the two agree (the count rule's fires, whole) and where they differ (the
sequence rule: views piling up, ties at one timestamp; the order of tied event_ids). The module
docstring of bench/peer.py explains each case.

The events go to a 2-partition topic in (about) ts order, each user in one partition; then one
event per partition past the bound, so both watermarks pass every match. The peer runs as a
subprocess until its out topic holds the expected matches, then is killed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.peer import compare
from moments_testing.flink_job import free_port
from moments_testing.launcher import run_moments, stop_group
from tests.helpers import wait_for
from tests.integration.detect_kafka import TopicReader, create_topics

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
T0 = 1_763_805_600_000
BOUND_MS = 2_000
PARTITIONS = 2


def event(event_id: str, user: str, event_type: str, at_ms: int) -> dict:
    return {
        "event_id": event_id,
        "user_id": user,
        "event_type": event_type,
        "ts": T0 + at_ms,
        "properties": {},
        "device": "web",
    }


# (event, sent at ms): the send order; an event sent later than its ts is out of order (within
# the bound). Equal send times keep the order written here.
CRAFTED = [
    # login_trouble: 3 within 2m (a page view between: not a login, no matter).
    (event("l3-1", "u-login3", "login_failed", 0), 0),
    (event("l3-pv", "u-login3", "page_view", 10_000), 10_000),
    (event("l3-2", "u-login3", "login_failed", 30_000), 30_000),
    (event("l3-3", "u-login3", "login_failed", 60_000), 60_000),
    # Only 2: nothing.
    (event("l2-1", "u-login2", "login_failed", 0), 0),
    (event("l2-2", "u-login2", "login_failed", 50_000), 50_000),
    # Exactly 2m from the first to the third: nothing; a fourth 1s later makes 3 within 2m.
    (event("le-1", "u-login-edge", "login_failed", 0), 0),
    (event("le-2", "u-login-edge", "login_failed", 60_000), 60_000),
    (event("le-3", "u-login-edge", "login_failed", 120_000), 120_000),
    (event("le-4", "u-login-edge", "login_failed", 121_000), 121_000),
    # Six in a row: two fires, each failure counted once.
    *((event(f"l6-{k}", "u-login6", "login_failed", k * 1_000), k * 1_000) for k in range(6)),
    # Three at one ms, sent against event_id order: the same fire, the ids in another order.
    (event("lt-3", "u-login-tie", "login_failed", 7_000), 7_000),
    (event("lt-2", "u-login-tie", "login_failed", 7_000), 7_000),
    (event("lt-1", "u-login-tie", "login_failed", 7_000), 7_000),
    # quick_add: a view, a page view, the add 5s later.
    (event("q-v", "u-quick", "product_view", 0), 0),
    (event("q-pv", "u-quick", "page_view", 2_000), 2_000),
    (event("q-a", "u-quick", "add_to_cart", 5_000), 5_000),
    # Outside 10s: nothing.
    (event("s-v", "u-slow", "product_view", 0), 0),
    (event("s-a", "u-slow", "add_to_cart", 11_000), 11_000),
    # 1 ms inside 10s: a fire; exactly 10s: nothing.
    (event("qe-v1", "u-quick-edge", "product_view", 0), 0),
    (event("qe-a1", "u-quick-edge", "add_to_cart", 9_999), 9_999),
    (event("qe-v2", "u-quick-edge", "product_view", 20_000), 20_000),
    (event("qe-a2", "u-quick-edge", "add_to_cart", 30_000), 30_000),
    # The view sent 1.5 s after the add, 1 s earlier in event time: both sort by ts.
    (event("o-a", "u-ooo", "add_to_cart", 5_000), 5_000),
    (event("o-v", "u-ooo", "product_view", 4_000), 5_500),
    # Views pile up: ours [v0, a2] and [v1, a3]; the peer only [v1, a2].
    (event("p-v0", "u-pile", "product_view", 0), 0),
    (event("p-v1", "u-pile", "product_view", 1_000), 1_000),
    (event("p-a2", "u-pile", "add_to_cart", 2_000), 2_000),
    (event("p-a3", "u-pile", "add_to_cart", 3_000), 3_000),
    # Ties at one ms. Sent add first, the view's event_id sorting first: ours only.
    (event("to-2", "u-tie-ours", "add_to_cart", 5_000), 5_000),
    (event("to-1", "u-tie-ours", "product_view", 5_000), 5_000),
    # Sent view first, the add's event_id sorting first: the peer's only.
    (event("tp-2", "u-tie-peer", "product_view", 5_000), 5_000),
    (event("tp-1", "u-tie-peer", "add_to_cart", 5_000), 5_000),
]
# Skipped by both: not JSON, and a failed login without `ts`.
BAD = [
    b"{not json",
    json.dumps(
        {"event_id": "bad-no-ts", "user_id": "u-login2", "event_type": "login_failed"}
    ).encode(),
]
LAST_TS_MS = max(e["ts"] for e, _ in CRAFTED) - T0

# What MATCH_RECOGNIZE gives: (rule, user, trigger_ts offset, event_ids).
PEER_EXPECTED = {
    ("login_trouble", "u-login3", 60_000, ("l3-1", "l3-2", "l3-3")),
    ("login_trouble", "u-login-edge", 121_000, ("le-2", "le-3", "le-4")),
    ("login_trouble", "u-login6", 2_000, ("l6-0", "l6-1", "l6-2")),
    ("login_trouble", "u-login6", 5_000, ("l6-3", "l6-4", "l6-5")),
    ("login_trouble", "u-login-tie", 7_000, ("lt-3", "lt-2", "lt-1")),
    ("quick_add", "u-quick", 5_000, ("q-v", "q-a")),
    ("quick_add", "u-quick-edge", 9_999, ("qe-v1", "qe-a1")),
    ("quick_add", "u-ooo", 5_000, ("o-v", "o-a")),
    ("quick_add", "u-pile", 2_000, ("p-v1", "p-a2")),
    ("quick_add", "u-tie-peer", 5_000, ("tp-2", "tp-1")),
}


def stream() -> list[tuple[int | None, bytes]]:
    """(partition or None: by key, record) in send order: the crafted events, the bad records
    among them (neither may count: u-login2 would reach 3 failures), then one event per
    partition past the bound."""
    ordered = [e for e, _ in sorted(CRAFTED, key=lambda pair: pair[1])]
    records = [json.dumps(e).encode() for e in ordered]
    records[len(records) // 2 : len(records) // 2] = BAD
    flush_at = LAST_TS_MS + BOUND_MS + 10
    flushes = [
        (p, json.dumps(event(f"flush-{p}", f"flush-{p}", "page_view", flush_at)).encode())
        for p in range(PARTITIONS)
    ]
    return [(None, r) for r in records] + flushes


def produce(bootstrap: str, topic: str, records: list[tuple[int | None, bytes]]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    for partition, record in records:
        try:
            key = json.loads(record)["user_id"].encode()
        except ValueError:
            key = None
        producer.send(topic, record, key=key, partition=partition)
    producer.flush()
    producer.close()


def as_tuple(match: dict) -> tuple:
    return (
        match["rule_id"],
        match["user_id"],
        match["trigger_ts"] - T0,
        tuple(match["event_ids"]),
    )


@pytest.fixture(scope="module")
def run(kafka_bootstrap, kafka_admin, tmp_path_factory):
    """Produce, start the peer, back-test the same events meanwhile, read the peer's matches."""
    directory = tmp_path_factory.mktemp("bench-peer")
    topics = create_topics(kafka_admin, "bench-peer", {"events": PARTITIONS, "out": PARTITIONS})
    records = stream()
    produce(kafka_bootstrap, topics["events"], records)
    events_path = directory / "events.jsonl"
    events_path.write_bytes(b"".join(r + b"\n" for _, r in records))

    log_path = directory / "peer.log"
    log = open(log_path, "w")  # noqa: SIM115 - closed below
    peer = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "bench" / "peer.py"),
            "--bootstrap-servers",
            kafka_bootstrap,
            "--events-topic",
            topics["events"],
            "--out-topic",
            topics["out"],
            "--group-id",
            f"peer-{topics['events']}",
            "--parallelism",
            "2",
            "--rest-port",
            str(free_port()),
            "--bound-ms",
            str(BOUND_MS),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        start_new_session=True,
    )
    reader = TopicReader(kafka_bootstrap, topics["out"])
    try:
        actions_path = directory / "actions.jsonl"
        backtest = run_moments(
            "backtest",
            "--rules",
            str(ROOT / "examples" / "rules.yaml"),
            "--events",
            str(events_path),
            "--out",
            str(actions_path),
            "--max-out-of-orderness",
            f"{BOUND_MS}ms",
            "--progress",
            "off",
        )
        assert backtest.returncode == 0, backtest.stderr

        def matches_out() -> bool:
            assert peer.poll() is None, log_path.read_text()[-3000:]
            return len(reader.poll()) >= len(PEER_EXPECTED)

        wait_for(matches_out, timeout=120, interval=0.5, message="the peer's matches")
        reader.poll()
        records_out = list(reader.records)
    finally:
        stop_group(peer)
        log.close()
        reader.close()
        kafka_admin.delete_topics(list(topics.values()))
    ours = [json.loads(line) for line in actions_path.read_text().splitlines() if line.strip()]
    return ours, records_out


def test_peer_matches_are_match_recognizes(run):
    _, records = run
    matches = [json.loads(r.value) for r in records]
    assert {as_tuple(m) for m in matches} == PEER_EXPECTED
    assert len(matches) == len(PEER_EXPECTED)
    assert all(r.key.decode() == json.loads(r.value)["user_id"] for r in records)


def test_compare_with_the_backtest(run):
    ours, records = run
    peer = [json.loads(r.value) for r in records]
    report = compare(ours, peer)

    login = report["login_trouble"]
    assert login["equal"] and login["other_event_ids"] == 0
    assert (login["ours"], login["peer"], login["both"]) == (5, 5, 5)
    assert login["other_order"] == 1
    assert login["examples"]["other_order"] == [
        {
            "user_id": "u-login-tie",
            "trigger_ts": T0 + 7_000,
            "event_ids": ["lt-1", "lt-2", "lt-3"],
            "peer_event_ids": ["lt-3", "lt-2", "lt-1"],
        }
    ]

    quick = report["quick_add"]
    assert (quick["ours"], quick["peer"], quick["both"]) == (6, 5, 4)
    only_ours = {(e["user_id"], e["trigger_ts"] - T0) for e in quick["examples"]["only_ours"]}
    assert only_ours == {("u-pile", 3_000), ("u-tie-ours", 5_000)}
    assert quick["only_ours"] == 2
    only_peer = {(e["user_id"], e["trigger_ts"] - T0) for e in quick["examples"]["only_peer"]}
    assert only_peer == {("u-tie-peer", 5_000)}
    assert quick["only_peer"] == 1
    assert quick["other_order"] == 0
    assert quick["examples"]["other_event_ids"] == [
        {
            "user_id": "u-pile",
            "trigger_ts": T0 + 2_000,
            "event_ids": ["p-v0", "p-a2"],
            "peer_event_ids": ["p-v1", "p-a2"],
        }
    ]
    ours_quick = {
        (a["user_id"], a["trigger_ts"] - T0, tuple(a["event_ids"]))
        for a in ours
        if a["rule_id"] == "quick_add"
    }
    assert ("u-pile", 3_000, ("p-v1", "p-a3")) in ours_quick
    assert ("u-tie-ours", 5_000, ("to-1", "to-2")) in ours_quick
