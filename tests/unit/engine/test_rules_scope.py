"""--rules-scope (udfs/rules_scope.py): a version that reads what the scope's filters drop or
summarise is rejected with rule/field/reason; one that fits is applied, and the job's history
then summarises activity as the scope (and the JVM filter built from it) does."""

from __future__ import annotations

import json

from schemas.rules import parse_rules
from udfs.live_rules import APPLIED, REJECTED, LiveRules, entry_key
from udfs.rules_scope import RulesScope

ACTION = {"name": "n", "destinations": ["kafka"]}


def rule(rule_id: str, pattern: dict, **extra) -> dict:
    return {"id": rule_id, "pattern": pattern, "action": ACTION, **extra}


def count(rule_id: str, event_type: str) -> dict:
    pattern = {"type": "count", "match": {"event_type": event_type}, "threshold": 2}
    return rule(rule_id, {**pattern, "within": "1m"})


def silence(rule_id: str, start: str, gap: str, unless: str | None = None) -> dict:
    pattern = {"type": "silence", "start": {"event_type": start}, "gap": gap}
    if unless:
        pattern["unless"] = {"event_type": unless}
    return rule(rule_id, pattern)


def rules(*documents):
    return parse_rules({"rules": list(documents)})


# Filters drop nothing (a silence reads every event) but summarise all but add/pay/view as
# activity, in buckets of 30 s; silences start with add only.
WITH_SILENCE = RulesScope(
    rules(silence("s", "add", "45s", unless="pay"), silence("t", "add", "30s"), count("c", "view"))
)
# No silence: the prefilter drops every type but login_failed and view.
NO_SILENCE = RulesScope(rules(count("c", "login_failed"), count("d", "view")))


def reasons(scope, *documents) -> dict[str, str]:
    return {p.rule_id: p.reason for p in scope.problems(rules(*documents))}


def test_rules_within_the_scope_fit():
    assert reasons(WITH_SILENCE, count("x", "pay"), silence("y", "add", "2m", unless="view")) == {}
    assert reasons(NO_SILENCE, count("x", "view")) == {}


def test_a_type_the_prefilter_drops_is_refused():
    found = reasons(NO_SILENCE, count("x", "search"), silence("y", "login_failed", "1m"))
    assert "reads search, which the scope drops upstream" in found["x"]
    assert "every event type" in found["y"]  # a silence needs every event


def test_a_type_summarised_as_activity_is_refused():
    assert (
        "filters on search, which the scope summarises"
        in reasons(WITH_SILENCE, count("x", "search"))["x"]
    )


def test_a_silence_gap_under_the_scopes_bucket_is_refused():
    assert (
        "gap of 10000 ms, under the scope's smallest (30000 ms)"
        in reasons(WITH_SILENCE, silence("x", "add", "10s"))["x"]
    )


def test_a_silence_started_by_a_type_no_scope_silence_starts_is_refused():
    # view is read (not activity), but the JVM filter holds activity until a user's first add.
    assert "a silence started by view" in reasons(WITH_SILENCE, silence("x", "view", "1m"))["x"]


def test_a_job_with_a_scope_rejects_a_version_beyond_it_and_keeps_its_own():
    live, entries = LiveRules(None, WITH_SILENCE), {}

    def receive(offset, version, documents):
        document = {"rules": documents}
        raw = json.dumps({"version": version, "effective_from": None, "rules": document})
        received = live.receive(entries, entry_key(0, offset), "rules", raw, 5_000)
        if received.entry is not None:
            entries[received.entry[0]] = received.entry[1]
        return received.status

    assert receive(0, "v1", [count("x", "pay")])["status"] == APPLIED
    status = receive(1, "v2", [count("x", "search")])
    assert status["status"] == REJECTED
    assert (
        status["problems"][0]["rule"] == "x" and "--rules-scope" in status["problems"][0]["reason"]
    )
    history = live.history(entries.items())
    assert history.names == ["v1"]
    # Activity as the scope makes it (the JVM filter is built from the same rules).
    assert history.filtered_types == frozenset({"add", "pay", "view"})
    assert history.activity_bucket_ms == 30_000
    assert LiveRules(None).history(entries.items()).filtered_types is None  # no scope: none
