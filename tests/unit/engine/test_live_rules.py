"""Live rules: a history of versions switched at event time T (DESIGN.md "Live rules") against a
naive reading: each rule runs its naive history on the events of the span of versions in which it
is kept with the same definition, [first T, T of the version that changes or removes it), keeping
only its fires before the span's end; every fire carries the version in force at its trigger_ts.
"""

from __future__ import annotations

import random
from collections import defaultdict

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.event import Event
from schemas.rules_record import RulesRecord, effective_schedule
from tests.unit.engine.conftest import ev, make_rules
from tests.unit.engine.oracle import _rule
from udfs.engine import END_OF_TIME
from udfs.model import EngineEvent
from udfs.patterns.base import state_key
from udfs.replay import Replay, replay
from udfs.rules_history import RulesHistory
from udfs.rules_scope import RulesScope

# Two definitions per rule id (a change), and the first one again with another action (kept).
DEFINITIONS = {
    "cnt": [
        {"type": "count", "match": {"event_type": "a"}, "threshold": 2, "within": "50ms"},
        {"type": "count", "match": {"event_type": "a"}, "threshold": 3, "within": "50ms"},
    ],
    "seq": [
        {"type": "sequence", "steps": [{"event_type": "a"}, {"event_type": "b"}], "within": "40ms"},
        {"type": "sequence", "steps": [{"event_type": "b"}, {"event_type": "c"}], "within": "40ms"},
    ],
    "abs": [
        {
            "type": "absence",
            "start": {"event_type": "a"},
            "missing": {"event_type": "b"},
            "within": "40ms",
        },
        {
            "type": "absence",
            "start": {"event_type": "a"},
            "missing": {"event_type": "c"},
            "within": "25ms",
        },
    ],
    "sil": [
        {
            "type": "silence",
            "start": {"event_type": "b"},
            "unless": {"event_type": "c"},
            "gap": "25ms",
        },
        {"type": "silence", "start": {"event_type": "c"}, "gap": "35ms"},
    ],
}
COOLDOWNS = {"cnt": "30ms", "sil": "60ms"}


def rule_document(rule_id: str, choice: int) -> dict:
    rule = {"id": rule_id, "pattern": DEFINITIONS[rule_id][choice % 2]}
    if rule_id in COOLDOWNS:
        rule["cooldown"] = COOLDOWNS[rule_id]
    suffix = "_other" if choice == 2 else ""
    rule["action"] = {"name": f"{rule_id}_action{suffix}", "destinations": ["kafka"]}
    return rule


version_specs = st.lists(
    st.tuples(
        st.dictionaries(st.sampled_from(sorted(DEFINITIONS)), st.integers(0, 2), min_size=1),
        st.one_of(st.none(), st.integers(0, 90).map(lambda k: 5 * k)),
    ),
    min_size=1,
    max_size=4,
)

event_lists = st.lists(
    st.tuples(
        st.sampled_from(["u1", "u2"]),
        st.integers(0, 80).map(lambda k: 5 * k),
        st.sampled_from(["a", "b", "c", "d", "d"]),
    ),
    max_size=50,
)


def records_of(specs) -> list[RulesRecord]:
    records = []
    for number, (chosen, since) in enumerate(specs):
        document = {"rules": [rule_document(rid, choice) for rid, choice in sorted(chosen.items())]}
        # Only the first may be null (in force from the start); later nulls get a time.
        if since is None and number > 0:
            since = 5 * number
        records.append(RulesRecord(f"v{number}", since, make_rules(*document["rules"]), document))
    return records


def events_of(raw) -> list[Event]:
    return [
        Event(event_id=f"e{i:03d}", user_id=u, event_type=t, ts=ts)
        for i, (u, ts, t) in enumerate(raw)
    ]


def arrival(events, bound_ms, seed):
    rng = random.Random(seed)
    keyed = [
        (e.ts + rng.randrange(bound_ms) if bound_ms else e.ts, i, e) for i, e in enumerate(events)
    ]
    return [e for _, _, e in sorted(keyed)]


def spans(schedule):
    """(rule, start, end) per stretch of versions holding a rule with one state_key."""
    out = []
    open_spans: dict[str, list] = {}
    for since, _name, rules in schedule:
        now = {rule.id: rule for rule in rules}
        for rule_id, (rule, start) in list(open_spans.items()):
            if rule_id not in now or state_key(now[rule_id]) != state_key(rule):
                out.append((rule, start, since))
                del open_spans[rule_id]
        for rule_id, rule in now.items():
            if rule_id not in open_spans:
                open_spans[rule_id] = (rule, since)
    out.extend((rule, start, END_OF_TIME) for rule, start in open_spans.values())
    return out


def oracle(schedule, events) -> list[tuple]:
    starts = [since for since, _, _ in schedule]

    def version_at(ts):
        index = max(i for i, since in enumerate(starts) if since <= ts)
        return schedule[index][1]

    by_user = defaultdict(list)
    for e in events:
        by_user[e.user_id].append(EngineEvent.from_event(e))
    out = []
    for user, history in by_user.items():
        history.sort(key=lambda e: (e.ts, e.event_id))
        for rule, start, end in spans(schedule):
            seen = [e for e in history if start <= e.ts < end]
            for trigger_ts, ids in _rule(rule, seen):
                if trigger_ts < end:
                    out.append((rule.id, user, trigger_ts, ids, version_at(trigger_ts)))
    return sorted(out)


def engine_fires(history, events, bound_ms, activity_delay=None) -> list[tuple]:
    return sorted(
        (a.rule_id, a.user_id, a.trigger_ts, tuple(a.event_ids), a.rules_version)
        for a in replay(history, events, bound_ms, activity_delay)
    )


# Random version histories, events, bounds and arrival orders: the switch tests' inputs.
SWITCH_CASES = given(
    specs=version_specs,
    raw=event_lists,
    bound_ms=st.sampled_from([0, 7, 30, 100]),
    seed=st.integers(),
    split=st.booleans(),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@SWITCH_CASES
def test_switches_match_the_naive_reading(specs, raw, bound_ms, seed, split):
    schedule = effective_schedule(records_of(specs))
    events = events_of(raw)
    delay = (lambda user: 13) if split else None
    got = engine_fires(RulesHistory(schedule), arrival(events, bound_ms, seed), bound_ms, delay)
    assert got == oracle(schedule, events)


def history(*versions) -> RulesHistory:
    """versions: (name, effective_from, [rule documents])."""
    records = [
        RulesRecord(name, since, make_rules(*rules), {"rules": rules})
        for name, since, rules in versions
    ]
    return RulesHistory(effective_schedule(records))


SILENCE = rule_document("sil", 0)
COUNT = rule_document("cnt", 0)


def actions(hist, events, bound_ms=0):
    return [(a.rule_id, a.trigger_ts, a.rules_version) for a in replay(hist, events, bound_ms)]


def test_a_deadline_at_the_switch_is_the_new_versions():
    # Silence armed at 0, deadline 25 = T: the new version (which removed it) handles it: no fire.
    events = [ev("b1", 0, "b")]
    assert actions(history(("v1", None, [SILENCE]), ("v2", 25, [COUNT])), events) == []
    assert actions(history(("v1", None, [SILENCE]), ("v2", 26, [COUNT])), events) == [
        ("sil", 25, "v1")
    ]
    # Kept: it fires under the new version, which its action carries.
    kept = rule_document("sil", 2)
    assert actions(history(("v1", None, [SILENCE]), ("v2", 25, [kept])), events) == [
        ("sil", 25, "v2")
    ]


def test_an_event_at_the_switch_is_the_new_versions():
    events = [ev("a1", 0, "a"), ev("a2", 10, "a")]
    assert actions(history(("v1", None, [COUNT]), ("v2", 10, [SILENCE])), events) == []
    assert actions(history(("v1", None, [COUNT]), ("v2", 11, [SILENCE])), events) == [
        ("cnt", 10, "v1")
    ]


def test_a_changed_rule_starts_empty_and_a_kept_one_keeps_its_cooldown():
    changed = rule_document("cnt", 1)  # threshold 3
    events = [ev("a1", 0, "a"), ev("a2", 20, "a"), ev("a3", 30, "a"), ev("a4", 40, "a")]
    # Changed at 15: a1 is forgotten; a2, a3, a4 make three.
    assert actions(history(("v1", None, [COUNT]), ("v2", 15, [changed])), events) == [
        ("cnt", 40, "v2")
    ]
    # Kept at 15 (action renamed): fires at 20 (a1, a2); the cooldown (30ms) from 20 carries
    # over, so a3+a4 at 40 is suppressed (used up).
    kept = rule_document("cnt", 2)
    assert actions(history(("v1", None, [COUNT]), ("v2", 15, [kept])), events) == [
        ("cnt", 20, "v2")
    ]


def test_a_user_without_events_after_the_switch_still_switches():
    # u1 armed under v1, nothing after; v2 removes the rule before the deadline.
    events = [ev("b1", 0, "b", user="u1"), ev("x", 500, "a", user="u2")]
    assert actions(history(("v1", None, [SILENCE]), ("v2", 10, [COUNT])), events) == []


def test_rules_before_the_first_effective_from_do_not_run():
    events = [ev("a1", 0, "a"), ev("a2", 10, "a"), ev("a3", 100, "a"), ev("a4", 110, "a")]
    assert actions(history(("v1", 50, [COUNT])), events) == [("cnt", 110, "v1")]


def test_removed_then_readded_starts_empty():
    events = [ev("a1", 0, "a"), ev("a2", 40, "a")]
    hist = history(("v1", None, [COUNT]), ("v2", 10, [SILENCE]), ("v3", 20, [COUNT]))
    assert actions(hist, events) == []


def test_state_records_its_version_and_a_restored_state_resumes_there():
    import pickle

    hist = history(("v1", None, [SILENCE, COUNT]), ("v2", 100, [COUNT]))
    runner = Replay(hist, 0)
    runner.push(ev("b1", 0, "b"))
    runner.push(ev("a1", 5, "a"))
    state = runner.states["u1"].user
    assert state.version == "v1"
    restored = pickle.loads(pickle.dumps(runner.states["u1"]))
    assert restored.user.version == "v1"
    runner.states = {"u1": restored}
    runner.push(ev("a2", 30, "a"))
    runner.finish()
    assert runner.states == {}


def test_without_a_history_nothing_changes():
    hist = history(("v1", None, [SILENCE, COUNT]))
    events = [ev("b1", 0, "b"), ev("a1", 5, "a"), ev("a2", 6, "a"), ev("d1", 100, "d")]
    from udfs.engine import Engine

    plain = [(a.rule_id, a.trigger_ts) for a in replay(Engine(make_rules(SILENCE, COUNT)), events)]
    assert [(r, t) for r, t, _ in actions(hist, events)] == plain
    assert {v for _, _, v in actions(hist, events)} == {"v1"}


def test_an_open_outcome_resolves_by_its_versions_goal_after_the_rule_is_removed():
    with_goal = {**COUNT, "goal": {"event_type": "c", "within": "100ms"}}
    hist = history(("v1", None, [with_goal]), ("v2", 30, [SILENCE]))
    outcomes, got = [], []
    runner = Replay(hist, 0, on_action=got.append, on_outcome=outcomes.append)
    for event in [ev("a1", 0, "a"), ev("a2", 10, "a"), ev("c1", 50, "c")]:
        runner.push(event)
    runner.finish()
    assert [(a.rule_id, a.trigger_ts, a.rules_version) for a in got] == [("cnt", 10, "v1")]
    assert [(o.rule_id, o.converted, o.goal_ts, o.rules_version) for o in outcomes] == [
        ("cnt", True, 50, "v1")
    ]


# Every definition of every rule id at once (distinct ids): a --rules-scope every version fits.
SCOPE = RulesScope(
    make_rules(
        *(
            {**rule_document(rule_id, choice), "id": f"{rule_id}{choice}"}
            for rule_id in DEFINITIONS
            for choice in (0, 1)
        )
    )
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@SWITCH_CASES
def test_with_a_scope_activity_is_summarised_and_switches_still_match(
    specs, raw, bound_ms, seed, split
):
    records = records_of(specs)
    assert all(SCOPE.problems(record.rules) == [] for record in records)
    schedule = effective_schedule(records)
    hist = RulesHistory(schedule, activity=True, scope=SCOPE)
    assert hist.filtered_types == frozenset("abc")  # "d" is activity, in 25 ms buckets
    assert hist.activity_bucket_ms == 25
    events = events_of(raw)
    delay = (lambda user: 13) if split else None
    got = engine_fires(hist, arrival(events, bound_ms, seed), bound_ms, delay)
    assert got == oracle(schedule, events)
