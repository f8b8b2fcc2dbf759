"""bench/peer.py without Flink: `compare` (our actions against the MATCH_RECOGNIZE peer's
matches), the rules it covers against examples/rules.yaml, and the SQL it builds."""

from __future__ import annotations

import argparse

import pytest

from bench.peer import (
    LOGIN_TROUBLE,
    QUICK_ADD,
    compare,
    interval,
    peer_rules,
    statements,
)
from schemas.action import action_id
from schemas.rules import load_rules
from udfs.filters import event_types_of


def ours(rule_id: str, user_id: str, trigger_ts: int, event_ids: list[str]) -> dict:
    """An action as our job writes it (the fields compare reads, and some it ignores)."""
    return {
        "action_id": action_id(rule_id, user_id, trigger_ts),
        "rule_id": rule_id,
        "action": "any",
        "user_id": user_id,
        "trigger_ts": trigger_ts,
        "detected_at": trigger_ts + 5,
        "event_ids": event_ids,
        "destinations": ["kafka"],
        "enrichment": "skipped",
    }


def peer(rule_id: str, user_id: str, trigger_ts: int, event_ids: list[str]) -> dict:
    return {
        "rule_id": rule_id,
        "user_id": user_id,
        "trigger_ts": trigger_ts,
        "event_ids": event_ids,
    }


def test_peer_covers_the_count_and_sequence_rules():
    assert peer_rules() == {"login_trouble", "quick_add"}


def test_the_peers_rules_are_those_of_examples_rules_yaml():
    rules = {rule.id: rule for rule in load_rules("examples/rules.yaml")}
    count, sequence = rules["login_trouble"].pattern, rules["quick_add"].pattern
    assert (count.type, count.threshold, count.within) == (
        "count",
        LOGIN_TROUBLE["threshold"],
        LOGIN_TROUBLE["within_ms"],
    )
    assert event_types_of(count.match) == {LOGIN_TROUBLE["event_type"]}
    assert rules["login_trouble"].cooldown is None
    assert (sequence.type, sequence.within) == ("sequence", QUICK_ADD["within_ms"])
    assert [event_types_of(step) for step in sequence.steps] == [{t} for t in QUICK_ADD["steps"]]
    assert rules["quick_add"].cooldown is None


def test_same_detections_are_equal():
    a = [
        ours("login_trouble", "u-1", 1000, ["e1", "e2", "e3"]),
        ours("quick_add", "u-2", 50, ["v", "a"]),
    ]
    b = [
        peer("quick_add", "u-2", 50, ["v", "a"]),
        peer("login_trouble", "u-1", 1000, ["e1", "e2", "e3"]),
    ]
    report = compare(a, b)
    assert set(report) == {"login_trouble", "quick_add"}
    for rule in report.values():
        assert rule["ours"] == rule["peer"] == rule["both"] == 1
        assert rule["only_ours"] == rule["only_peer"] == rule["other_event_ids"] == 0
        assert rule["equal"] is True
        assert rule["examples"] == {
            "only_ours": [],
            "only_peer": [],
            "other_event_ids": [],
            "other_order": [],
        }


def test_differences_per_rule_with_examples():
    a = [
        ours("quick_add", "u-1", 2_000, ["v0", "a2"]),
        ours("quick_add", "u-1", 3_000, ["v1", "a3"]),
        ours("quick_add", "u-tie", 500, ["tie-1", "tie-2"]),
        ours("login_trouble", "u-9", 60_000, ["f1", "f2", "f3"]),
    ]
    b = [
        peer("quick_add", "u-1", 2_000, ["v1", "a2"]),
        peer("quick_add", "u-peer", 700, ["v", "a"]),
        peer("login_trouble", "u-9", 60_000, ["f1", "f2", "f3"]),
    ]
    report = compare(a, b)
    quick = report["quick_add"]
    assert {k: quick[k] for k in ("ours", "peer", "both", "only_ours", "only_peer")} == {
        "ours": 3,
        "peer": 2,
        "both": 1,
        "only_ours": 2,
        "only_peer": 1,
    }
    assert quick["equal"] is False
    assert quick["other_event_ids"] == 1
    assert quick["examples"]["only_ours"] == [
        {"user_id": "u-1", "trigger_ts": 3_000, "event_ids": ["v1", "a3"]},
        {"user_id": "u-tie", "trigger_ts": 500, "event_ids": ["tie-1", "tie-2"]},
    ]
    assert quick["examples"]["only_peer"] == [
        {"user_id": "u-peer", "trigger_ts": 700, "event_ids": ["v", "a"]}
    ]
    assert quick["examples"]["other_event_ids"] == [
        {
            "user_id": "u-1",
            "trigger_ts": 2_000,
            "event_ids": ["v0", "a2"],
            "peer_event_ids": ["v1", "a2"],
        }
    ]
    assert report["login_trouble"]["equal"] is True


def test_the_same_events_in_another_order_are_told_apart():
    """Ties at one timestamp: ours in event_id order, the peer's in arrival order."""
    a = [
        ours("login_trouble", "u-1", 900, ["e-10", "e-11", "e-12"]),
        ours("login_trouble", "u-2", 900, ["e-20", "e-21", "e-22"]),
    ]
    b = [
        peer("login_trouble", "u-1", 900, ["e-11", "e-10", "e-12"]),
        peer("login_trouble", "u-2", 900, ["e-19", "e-21", "e-22"]),
    ]
    login = compare(a, b)["login_trouble"]
    assert (login["both"], login["other_event_ids"], login["other_order"]) == (2, 1, 1)
    assert login["equal"] is True
    assert login["examples"]["other_order"] == [
        {
            "user_id": "u-1",
            "trigger_ts": 900,
            "event_ids": ["e-10", "e-11", "e-12"],
            "peer_event_ids": ["e-11", "e-10", "e-12"],
        }
    ]
    assert [e["user_id"] for e in login["examples"]["other_event_ids"]] == ["u-2"]


def test_other_rules_of_ours_are_left_out():
    a = [
        ours("cart_silence", "u-1", 45_000, ["c"]),
        ours("no_checkout", "u-1", 45_000, ["c"]),
        ours("login_trouble", "u-1", 10, ["f1", "f2", "f3"]),
    ]
    report = compare(a, [peer("login_trouble", "u-1", 10, ["f1", "f2", "f3"])])
    assert set(report) == {"login_trouble", "quick_add"}
    assert report["login_trouble"]["equal"] is True
    assert report["quick_add"]["ours"] == report["quick_add"]["peer"] == 0
    assert report["quick_add"]["equal"] is True


def test_empty_sides():
    report = compare([], [])
    assert all(r["equal"] and r["ours"] == r["peer"] == 0 for r in report.values())
    only_peer = compare([], [peer("login_trouble", "u-1", 10, ["a", "b", "c"])])
    assert only_peer["login_trouble"]["only_peer"] == 1
    assert only_peer["login_trouble"]["equal"] is False


def test_duplicates_count_once_and_are_reported():
    a = [ours("quick_add", "u-1", 5, ["v", "a"])] * 2
    b = [peer("quick_add", "u-1", 5, ["v", "a"])] * 3
    quick = compare(a, b)["quick_add"]
    assert (quick["ours"], quick["peer"], quick["both"]) == (1, 1, 1)
    assert (quick["duplicates_ours"], quick["duplicates_peer"]) == (1, 2)
    assert quick["equal"] is True


def test_examples_are_at_most_five_in_user_then_time_order():
    a = [ours("login_trouble", f"u-{n}", 100 - n, ["x", "y", "z"]) for n in range(9, 0, -1)]
    trouble = compare(a, [])["login_trouble"]
    assert trouble["only_ours"] == 9
    assert [e["user_id"] for e in trouble["examples"]["only_ours"]] == [
        "u-1",
        "u-2",
        "u-3",
        "u-4",
        "u-5",
    ]


def test_trigger_ts_keys_compare_as_integers():
    report = compare(
        [ours("quick_add", "u-1", 1_763_805_600_123, ["v", "a"])],
        [peer("quick_add", "u-1", "1763805600123", ["v", "a"])],
    )
    assert report["quick_add"]["both"] == 1


@pytest.mark.parametrize(
    ("ms", "literal"),
    [
        (2_000, "INTERVAL '2' SECOND"),
        (10_000, "INTERVAL '10' SECOND"),
        (120_000, "INTERVAL '2' MINUTE"),
        (3_600_000, "INTERVAL '1' HOUR"),
        (100, "INTERVAL '0.100' SECOND"),
        (1_500, "INTERVAL '1.500' SECOND"),
        (150_000, "INTERVAL '150.000' SECOND(3, 3)"),
        (6_000_001, "INTERVAL '0 01:40:00.001' DAY TO SECOND(3)"),
        (90_000_000 + 1, "INTERVAL '1 01:00:00.001' DAY TO SECOND(3)"),
    ],
)
def test_interval_literals(ms, literal):
    assert interval(ms) == literal


def test_interval_must_be_positive():
    with pytest.raises(ValueError):
        interval(0)


def test_statements_carry_the_bound_and_the_rules():
    args = argparse.Namespace(
        bootstrap_servers="127.0.0.1:19092",
        events_topic="ev",
        out_topic="out",
        group_id="g",
        bound_ms=1_500,
    )
    ddl, inserts = statements(args)
    assert "WATERMARK FOR rt AS rt - INTERVAL '1.500' SECOND" in ddl[0]
    assert "'key.fields' = 'user_id'" in ddl[1]
    [login, quick] = inserts
    assert "PATTERN (F{3}) WITHIN INTERVAL '2' MINUTE" in login
    assert "AFTER MATCH SKIP PAST LAST ROW" in login
    assert "ARRAY[FIRST(F.event_id), FIRST(F.event_id, 1), FIRST(F.event_id, 2)]" in login
    assert "PATTERN (V A) WITHIN INTERVAL '10' SECOND" in quick
    assert "FROM view_add_events" in quick
