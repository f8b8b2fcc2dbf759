"""The versions a job keeps in broadcast state (udfs/live_rules.py): T resolved against the
watermark, invalid records rejected with rule/field/reason, the history rebuilt from entries."""

from __future__ import annotations

import json

from schemas.rules import parse_rules
from udfs.live_rules import APPLIED, INITIAL_VERSION, REJECTED, LiveRules, entry_key

RULES = {
    "rules": [
        {
            "id": "cnt",
            "pattern": {"type": "count", "match": {"event_type": "a"}, "threshold": 2,
                        "within": "1s"},
            "action": {"name": "n", "destinations": ["kafka"]},
        }
    ]
}  # fmt: skip
W = 5_000


def _raw(version, effective_from=None, rules=RULES) -> str:
    return json.dumps({"version": version, "effective_from": effective_from, "rules": rules})


def _receive(live, entries, offset, raw, watermark=W, key="rules"):
    received = live.receive(entries, entry_key(0, offset), key, raw, watermark)
    if received.entry is not None:
        entries[received.entry[0]] = received.entry[1]
    return received.status


def test_the_first_version_without_rules_file_is_in_force_from_the_start():
    live, entries = LiveRules(None), {}
    status = _receive(live, entries, 0, _raw("v1"))
    assert (status["status"], status["applied_from"]) == (APPLIED, None)
    history = live.history(entries.items())
    assert history.names == ["v1"] and history.starts == [float("-inf")]


def test_null_and_past_effective_from_are_applied_at_the_watermark_future_as_given():
    live, entries = LiveRules(parse_rules(RULES)), {}
    assert _receive(live, entries, 0, _raw("v1"))["applied_from"] == W
    assert _receive(live, entries, 1, _raw("v2", W - 1))["applied_from"] == W
    assert _receive(live, entries, 2, _raw("v3", W + 10))["applied_from"] == W + 10
    history = live.history(entries.items())
    # v2 at the same T as v1 supersedes it.
    assert history.names == [INITIAL_VERSION, "v2", "v3"]
    assert history.starts == [float("-inf"), W, W + 10]
    assert history.filtered_types is None  # no activity: every event is matched


def test_an_invalid_record_is_rejected_with_rule_field_reason_and_nothing_changes():
    live, entries = LiveRules(None), {}
    _receive(live, entries, 0, _raw("v1"))
    bad = {"rules": [{**RULES["rules"][0], "pattern": {"type": "count", "threshold": 0}}]}
    status = _receive(live, entries, 1, _raw("v2", W + 1, bad))
    assert status["status"] == REJECTED and status["version"] == "v2"
    assert {p["rule"] for p in status["problems"]} == {"cnt"}
    assert all(p["field"] and p["reason"] for p in status["problems"])
    assert _receive(live, entries, 2, "not json")["problems"][0]["field"] == "record"
    assert _receive(live, entries, 3, _raw("v3"), key="other")["problems"][0]["field"] == "key"
    # A version already in force is rejected too.
    assert _receive(live, entries, 4, _raw("v1", W + 5))["status"] == REJECTED
    assert len(entries) == 1 and live.history(entries.items()).names == ["v1"]


def test_a_record_seen_again_changes_nothing():
    live, entries = LiveRules(None), {}
    _receive(live, entries, 0, _raw("v1"))
    assert _receive(live, entries, 0, _raw("v1"))["status"] == "duplicate"
