"""Arrival order inside the bound changes nothing; late events are set aside; state stays small."""

from __future__ import annotations

import pickle
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.event import Event
from tests.unit.engine.conftest import ev, fires, make_rules
from tests.unit.engine.oracle import oracle_fires
from udfs.engine import END_OF_TIME, Engine, UserState
from udfs.model import EngineEvent
from udfs.replay import Replay

ALL_RULES = make_rules(
    {
        "id": "cnt",
        "pattern": {
            "type": "count",
            "match": {"event_type": "a"},
            "threshold": 2,
            "within": "50ms",
        },
        "cooldown": "30ms",
    },
    {
        "id": "seq",
        "pattern": {
            "type": "sequence",
            "steps": [{"event_type": "a"}, {"event_type": "b"}, {"event_type": "c"}],
            "within": "80ms",
        },
    },
    {
        "id": "seq1",
        "pattern": {"type": "sequence", "steps": [{"event_type": "c"}], "within": "1ms"},
        "cooldown": "40ms",
    },
    {
        "id": "abs",
        "pattern": {
            "type": "absence",
            "start": {"event_type": "a"},
            "missing": {"event_type": "b"},
            "within": "40ms",
        },
    },
    {
        "id": "sil",
        "pattern": {
            "type": "silence",
            "start": {"event_type": "b"},
            "unless": {"event_type": "c"},
            "gap": "25ms",
        },
        "cooldown": "60ms",
    },
)

event_lists = st.lists(
    st.tuples(
        st.sampled_from(["u1", "u2", "u3"]),
        st.integers(min_value=0, max_value=400),
        st.sampled_from(["a", "b", "c", "d"]),
    ),
    max_size=60,
)


def _events(raw):
    return [
        Event(event_id=f"e{i:03d}", user_id=u, event_type=t, ts=ts)
        for i, (u, ts, t) in enumerate(raw)
    ]


def _arrival(events, bound_ms, seed):
    """An arrival order in which no event is late: sort by ts plus a jitter below the bound."""
    rng = random.Random(seed)
    keyed = [
        (e.ts + rng.randrange(bound_ms) if bound_ms else e.ts, i, e) for i, e in enumerate(events)
    ]
    return [e for _, _, e in sorted(keyed)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=event_lists, bound_ms=st.sampled_from([0, 1, 7, 30, 100, 1000]), seed=st.integers())
def test_any_arrival_inside_the_bound_matches_the_sorted_history(raw, bound_ms, seed):
    events = _events(raw)
    expected = oracle_fires(ALL_RULES, events)
    arrived = _arrival(events, bound_ms, seed)
    assert sorted(fires(ALL_RULES, arrived, bound_ms)) == expected


# Activity-heavy: "d" is read by no rule's filters, so only the silence rule's "every event" clause
# reads it, and the engine keeps just the earliest and latest per bucket of the 25 ms gap.
dense_activity = st.lists(
    st.tuples(
        st.sampled_from(["u1", "u2"]),
        st.integers(min_value=0, max_value=150),
        st.sampled_from(["a", "b", "c", "d", "d", "d", "d"]),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=dense_activity, bound_ms=st.sampled_from([0, 7, 30, 100]), seed=st.integers())
def test_keeping_only_the_first_and_last_activity_per_bucket_is_exact(raw, bound_ms, seed):
    events = _events(raw)
    arrived = _arrival(events, bound_ms, seed)
    assert sorted(fires(ALL_RULES, arrived, bound_ms)) == oracle_fires(ALL_RULES, events)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    raw=dense_activity,
    bound_ms=st.sampled_from([0, 7, 30, 100]),
    seed=st.integers(),
    delays=st.fixed_dictionaries({"u1": st.integers(0, 60), "u2": st.integers(0, 60)}),
)
def test_waking_for_activity_only_at_its_bucket_end_however_late_is_exact(
    raw, bound_ms, seed, delays
):
    # The Flink operator wakes a user for activity only at the bucket's end, put off per user
    # (udfs.host.bucket_end_delay) so that all users' buckets do not end at one instant;
    # delays here go past the 25 ms bucket and past deadlines.
    events = _events(raw)
    arrived = _arrival(events, bound_ms, seed)
    got = fires(ALL_RULES, arrived, bound_ms, activity_delay=delays.__getitem__)
    assert sorted(got) == oracle_fires(ALL_RULES, events)


def test_a_bucket_end_wakeup_may_be_put_off_but_never_past_what_is_due():
    engine = Engine(ALL_RULES)
    state = UserState()
    engine.accept(state, EngineEvent(10, "e1", "d", None, {}))
    assert engine.wakeup(state, 7) == 32
    engine.accept(state, EngineEvent(20, "e2", "b", None, {}))  # buffered: due at 21
    assert engine.wakeup(state, 7) == 21


def test_activity_between_the_first_and_last_of_its_bucket_changes_nothing():
    engine = Engine(ALL_RULES)
    assert engine.activity_bucket_ms == 25 and engine.is_activity("d")
    assert not engine.is_activity("a")
    state = UserState()
    assert engine.accept(state, EngineEvent(10, "e1", "d", None, {})) is True
    assert engine.accept(state, EngineEvent(20, "e2", "d", None, {})) is True
    assert engine.accept(state, EngineEvent(15, "e3", "d", None, {})) is False
    # Lateness is the host's (tests/unit/host/test_host.py).
    assert state.pending == [] and engine.due(state) is None
    assert engine.wakeup(state) == 25  # the bucket's end: its events are dropped then
    assert engine.advance(state, 25) == [] and state.is_empty()


def test_an_earlier_activity_arriving_later_still_moves_the_deadline():
    # Silence armed at 5 (deadline 30). Activity at 40 arrives first, then at 26 (same bucket):
    # 26 moves the deadline to 51 and 40 to 65, so nothing fires at 30.
    arrived = [ev("1", 5, "b"), ev("2", 40, "d"), ev("3", 26, "d")]
    assert fires(ALL_RULES, arrived, 20) == [("sil", "u1", 65, ("1",))]


def test_no_activity_buckets_without_a_silence_rule():
    engine = Engine([r for r in ALL_RULES if r.id != "sil"])
    assert engine.activity_bucket_ms is None and not engine.is_activity("d")


@settings(max_examples=100, deadline=None)
@given(raw=event_lists, seed=st.integers())
def test_pickling_state_between_calls_changes_nothing(raw, seed):
    """The Flink operator keeps the state pickled between calls: a round-trip must be invisible."""
    events = _arrival(_events(raw), 30, seed)
    engine = Engine(ALL_RULES)
    plain = Replay(engine, 30)
    pickled = Replay(engine, 30)
    got_plain, got_pickled = [], []
    plain.on_action, pickled.on_action = got_plain.append, got_pickled.append
    for event in events:
        plain.push(event)
        pickled.push(event)
        pickled.states = {u: pickle.loads(pickle.dumps(s)) for u, s in pickled.states.items()}
    plain.finish()
    pickled.finish()
    assert got_plain == got_pickled


@settings(max_examples=100, deadline=None)
@given(raw=event_lists)
def test_no_state_is_left_once_event_time_has_passed_everything(raw):
    replay = Replay(Engine(ALL_RULES), 10)
    for event in _events(raw):
        replay.push(event)
    replay.finish()
    assert replay.states == {}


def test_state_is_dropped_when_windows_and_cooldowns_have_passed():
    replay = Replay(Engine(ALL_RULES), 0)
    replay.push(ev("1", 0, "a"))  # count item, absence armed
    replay.push(ev("2", 10, "b"))  # disarms absence, arms silence
    assert "u1" in replay.states
    replay.push(ev("x", 1_000, "d", user="u2"))  # event time far past every window of u1
    assert "u1" not in replay.states


def test_late_events_are_not_matched_and_are_counted():
    late = []
    rules = make_rules(
        {
            "id": "c1",
            "pattern": {
                "type": "count",
                "match": {"event_type": "a"},
                "threshold": 2,
                "within": "1h",
            },
        }
    )
    replay = Replay(Engine(rules), 100, on_late=late.append)
    replay.push(ev("1", 1_000, "a"))
    replay.push(ev("2", 899, "a"))  # watermark is 900: late
    replay.push(ev("3", 900, "d"))  # exactly at the watermark: not late
    replay.finish()
    assert [e.event_id for e in late] == ["2"]
    assert (replay.counts.read, replay.counts.processed, replay.counts.late) == (3, 2, 1)
    assert replay.counts.actions_per_rule == {"c1": 0}


def test_engine_entry_points_directly():
    engine = Engine(ALL_RULES)
    state = UserState()
    assert engine.accept(state, EngineEvent(10, "e1", "a", None, {}))
    # Lateness (an event below the watermark) is the host's (tests/unit/host/test_host.py).
    assert engine.wakeup(state) == 11  # matched once the watermark passes ts 10
    assert engine.advance(state, 10) == []  # an event at ts == watermark still waits
    assert len(state.pending) == 1
    assert engine.advance(state, 11) == []
    assert engine.wakeup(state) == 50  # absence deadline 10 + 40
    fired = engine.advance(state, END_OF_TIME)
    assert [(f.rule_id, f.trigger_ts) for f in fired] == [("abs", 50)]
    assert state.is_empty()


def test_rules_removed_from_the_file_lose_their_state():
    state = UserState()
    old = Engine(ALL_RULES)
    old.accept(state, EngineEvent(0, "e1", "a", None, {}))
    old.advance(state, 1)
    assert [k for k in state.rules if k.startswith("abs#")]
    new = Engine([r for r in ALL_RULES if r.id != "abs"])
    new.advance(state, 2)
    assert not [k for k in state.rules if k.startswith("abs#")]
