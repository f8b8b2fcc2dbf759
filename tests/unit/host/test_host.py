"""The Flink operator's semantics without a JVM: udfs/host.py over timers and state in memory."""

from __future__ import annotations

import pickle
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.event import Event
from tests.unit.engine.conftest import make_rules
from tests.unit.engine.oracle import oracle_fires
from tests.unit.engine.test_ordering import ALL_RULES
from tests.unit.host.harness import FlinkHost
from udfs.engine import UserState
from udfs.host import HostState, TimeDomain, is_late
from udfs.model import EngineEvent
from udfs.timing import round_up

MAX_WATERMARK = 2**63 - 1
IDLE = 5_000
START = 1_000_000  # wall-clock ms when the tests begin

ABSENCE = make_rules(
    {
        "id": "abs",
        "pattern": {
            "type": "absence",
            "start": {"event_type": "a"},
            "missing": {"event_type": "b"},
            "within": "1s",
        },
    }
)
# "d" is activity: only the silence rule's "every event" clause reads it (buckets of 25 ms).
SILENCE = make_rules(
    {"id": "sil", "pattern": {"type": "silence", "start": {"event_type": "b"}, "gap": "25ms"}},
    {
        "id": "cnt",
        "pattern": {"type": "count", "match": {"event_type": "a"}, "threshold": 9, "within": "1s"},
    },
)


def test_late_is_below_the_watermark_on_both_paths():
    host = FlinkHost(SILENCE)
    host.watermark(100)
    assert not host.event("e1", 99, "a")
    assert host.event("e2", 100, "a")  # exactly at the watermark: on time
    assert not host.event("e3", 99, "d")  # activity: its own path, the same rule
    assert host.event("e4", 100, "d")
    assert (host.host.late.count, host.host.processed.count) == (2, 2)
    assert is_late(99, 100) and not is_late(100, 100) and is_late(100, 50, forced=101)


def test_an_idle_input_forces_the_user_to_its_deadline_and_later_events_below_it_are_late():
    host = FlinkHost(ABSENCE, idle_fire_after_ms=IDLE, now=START)
    host.watermark(0)
    assert host.event("s", 10, "a")  # buffered (due at 11), then armed: deadline 1010
    assert host.clock(START + IDLE - 1) == []
    # Forced step by step in one call: the buffered event, then the deadline.
    assert host.clock(START + IDLE + 100) == [("abs", "u1", 1_010, ("s",), START + IDLE + 100)]
    assert host.host.idle_forced.count == 2
    assert host.user_state().forced == 1_010
    assert not host.event("x", 1_009, "b")  # below the user's forced event time: late
    assert host.event("y", 1_010, "b")
    assert host.event("z", 500, "b", user="u2")  # forcing is per user


def test_forced_time_makes_activity_late_too():
    host = FlinkHost(SILENCE, idle_fire_after_ms=IDLE, now=START)
    host.watermark(0)
    host.event("s", 10, "b")  # silence armed at 10: deadline 35
    host.clock(START + 2 * IDLE)
    assert [f[:3] for f in host.fires] == [("sil", "u1", 35)]
    assert not host.event("d1", 20, "d")  # the activity value keeps a copy of `forced`
    assert host.event("d2", 20, "d", user="u2")


def test_a_busy_but_lagging_stream_is_never_forced():
    host = FlinkHost(ABSENCE, idle_fire_after_ms=IDLE, now=START)
    host.watermark(0)
    host.event("s", 10, "a")
    now = START
    for i in range(1_200):  # a minute of elements every 50 ms, the watermark standing still
        now += 50
        host.clock(now)
        host.event(f"o{i}", 5, "x", user="u2")
    assert host.fires == [] and host.host.idle_forced.count == 0
    host.clock(now + IDLE + 100)  # the input stops: forced one idle_fire_after later
    assert ("abs", "u1", 1_010, ("s",), now + IDLE + 100) in host.fires


def test_a_moving_watermark_counts_as_input():
    host = FlinkHost(ABSENCE, idle_fire_after_ms=IDLE, now=START)
    host.watermark(0)
    host.event("s", 100_000, "a")
    for step in range(1, 600):  # the watermark creeps (a prefilter drops every record)
        host.watermark(step)
        host.clock(START + step * 100)
    assert host.host.idle_forced.count == 0
    # The operator notices a move only when called (here: its processing-time timers), so
    # forcing comes one to two idle_fire_after after the last move.
    host.clock(START + 600 * 100 + IDLE)
    host.clock(START + 600 * 100 + 2 * IDLE + 100)
    assert host.host.idle_forced.count == 2


def test_one_timer_per_user_and_stale_timers_only_re_register():
    host = FlinkHost(SILENCE)
    host.event("s", 0, "b")
    host.event("a1", 5, "a")
    assert host.timers() == [1]  # 5 + 1 is not earlier: nothing registered
    host.watermark(1)  # matches s: silence armed, deadline 25
    assert host.timers() == [6]  # a1 is still buffered
    host.watermark(6)  # a1 moves the deadline to 30
    assert host.timers() == [30]
    host.event("a2", 10, "a")  # moves it to 35 once matched
    host.watermark(11)
    assert host.timers() == [30, 35]
    assert host.watermark(32) == []  # the timer at 30 is stale: nothing fires
    assert host.timers() == [35] and host.user_state().timer == 35
    assert host.watermark(35) == [("sil", "u1", 35, ("s",), 35)]


def test_released_events_are_matched_in_the_call_that_brings_them():
    """With the JVM release operator, an event a rule reads costs no timer callback: its user's
    released events are matched up to the watermark in one call, and only a deadline (here the
    silence's) registers a timer; one left from before for a time the release covers is
    deleted, not left to fire for nothing."""
    host = FlinkHost(SILENCE, release=True)
    host.host.on_timer = None  # no callback may come
    host.event("s", 0, "b")
    host.event("a1", 5, "a")
    assert host.timers() == [] and host.state.values == {}  # held in the "JVM"
    assert host.watermark(6) == []  # one release: s arms the silence, a1 moves it to 30
    assert host.timers() == [30] and host.state.reads == 1 and host.state.writes == 1
    host.event("a2", 31, "a")
    assert host.watermark(32) == [("sil", "u1", 30, ("s",), 32)]  # fired in the release
    assert 30 not in host.timers()  # deleted; what is left is the count rule's window


def test_activity_reads_and_writes_only_the_activity_value():
    host = FlinkHost(SILENCE, activity_delay=lambda user: {"u1": 7}[user])
    host.event("d1", 10, "d")
    assert host.timers() == [25 + 7]  # its bucket's end, put off by the user's delay
    host.event("d2", 20, "d")  # a new latest: written
    host.event("d3", 15, "d")  # between the two: not even written back
    host.event("d4", 12, "d")
    assert (host.activity.reads, host.activity.writes) == (4, 2)
    assert (host.state.reads, host.state.writes) == (0, 0)
    assert host.timers() == [32]
    host.watermark(32)  # the bucket is dropped: nothing is left
    assert host.activity.values == {} and host.state.values == {}


def test_activity_moves_a_deadline_whenever_the_user_advances_next():
    host = FlinkHost(SILENCE, activity_delay=lambda user: 60)
    host.event("s", 0, "b")
    host.watermark(1)  # armed: deadline 25
    host.event("d", 10, "d")  # held in its bucket until 25 + 60; moves the deadline to 35
    assert host.watermark(25) == []  # the deadline's timer matches the held activity first
    assert host.watermark(34) == []
    assert host.watermark(35) == [("sil", "u1", 35, ("s",), 35)]


def test_state_pickles_the_user_apart_and_the_engine_keeps_no_host_fields():
    state = HostState()
    state.timer, state.ptimer, state.forced = 5, 6, 7
    state.user.pending.append(EngineEvent(1, "e", "a", None, {}))
    blob, arrived, *rest = state.__getstate__()
    assert pickle.loads(blob).pending == state.user.pending and arrived == [] and rest == [5, 6, 7]
    copy = pickle.loads(pickle.dumps(state))
    assert (copy.timer, copy.ptimer, copy.forced, copy.user.pending) == (
        5,
        6,
        7,
        state.user.pending,
    )
    assert not copy.is_empty() and HostState().is_empty()
    # `version`: the rules-history version a user is at (engine state; unset without a history).
    assert UserState.__slots__ == ("pending", "rules", "activity", "outcomes", "version")


def test_time_domains_are_pyflinks():
    from pyflink.datastream import TimeDomain as FlinkTimeDomain

    assert {d.name: d.value for d in TimeDomain} == {d.name: d.value for d in FlinkTimeDomain}


# Random streams: any arrival inside the bound, Flink's periodic watermarks lagging the events,
# any per-user bucket-end delay -> the naive oracle's fires.
streams = st.lists(
    st.tuples(
        st.sampled_from(["u1", "u2", "u3"]),
        st.integers(min_value=0, max_value=300),
        st.sampled_from(["a", "b", "c", "d", "d", "d"]),
        st.booleans(),  # a watermark after this event
    ),
    max_size=70,
)


def _arrivals(raw, bound_ms, seed):
    events = [
        Event(event_id=f"e{i:03d}", user_id=u, event_type=t, ts=ts)
        for i, (u, ts, t, _) in enumerate(raw)
    ]
    rng = random.Random(seed)
    jitter = [rng.randrange(bound_ms) if bound_ms else 0 for _ in events]
    order = sorted(range(len(events)), key=lambda i: (events[i].ts + jitter[i], i))
    return events, [(events[i], raw[i][3]) for i in order]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    raw=streams,
    bound_ms=st.sampled_from([0, 7, 30, 100]),
    seed=st.integers(),
    delays=st.fixed_dictionaries({u: st.integers(0, 60) for u in ("u1", "u2", "u3")}),
)
@pytest.mark.parametrize("release", [False, True], ids=["python-timers", "jvm-release"])
def test_the_operator_on_random_streams_gives_the_oracles_fires(
    raw, bound_ms, seed, delays, release
):
    """With the JVM release operator too: the same fires, and no state left."""
    events, arrivals = _arrivals(raw, bound_ms, seed)
    host = FlinkHost(ALL_RULES, activity_delay=delays.__getitem__, release=release)
    max_ts = None
    for event, watermark_after in arrivals:
        assert host.event(event.event_id, event.ts, event.event_type, event.user_id)
        max_ts = event.ts if max_ts is None else max(max_ts, event.ts)
        if watermark_after:
            host.watermark(max_ts - bound_ms)
    host.watermark(MAX_WATERMARK)
    got = sorted((rule, user, ts, ids) for rule, user, ts, ids, _ in host.fires)
    assert got == oracle_fires(ALL_RULES, events)
    assert host.state.values == {} and host.activity.values == {}


def _matches(fires: list[tuple]) -> list[tuple]:
    return sorted(fire[:4] for fire in fires)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=streams, bound_ms=st.sampled_from([0, 7, 30, 100]), seed=st.integers())
def test_released_events_fire_at_the_same_watermark_as_python_timers(raw, bound_ms, seed):
    """The JVM release operator changes which call matches an event, not when: after every
    watermark both hosts have given the same fires (detected_at aside: an event-time timer's
    time in this harness, the wall clock in Kafka mode, where releases run)."""
    _, arrivals = _arrivals(raw, bound_ms, seed)
    timers, released = FlinkHost(ALL_RULES), FlinkHost(ALL_RULES, release=True)
    max_ts = None
    for event, watermark_after in arrivals:
        for host in (timers, released):
            assert host.event(event.event_id, event.ts, event.event_type, event.user_id)
        max_ts = event.ts if max_ts is None else max(max_ts, event.ts)
        if watermark_after:
            a, b = (host.watermark(max_ts - bound_ms) for host in (timers, released))
            assert _matches(b) == _matches(a)
    a, b = (host.watermark(MAX_WATERMARK) for host in (timers, released))
    assert _matches(b) == _matches(a)
    assert released.state.values == {} and released.activity.values == {}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=streams, bound_ms=st.sampled_from([0, 30, 100]), seed=st.integers())
@pytest.mark.parametrize("release", [False, True], ids=["python-timers", "jvm-release"])
def test_idle_forcing_after_the_input_stops_equals_the_final_watermark(
    raw, bound_ms, seed, release
):
    events, arrivals = _arrivals(raw, bound_ms, seed)
    host = FlinkHost(ALL_RULES, idle_fire_after_ms=IDLE, now=START, release=release)
    max_ts = None
    for event, watermark_after in arrivals:
        host.event(event.event_id, event.ts, event.event_type, event.user_id)
        max_ts = event.ts if max_ts is None else max(max_ts, event.ts)
        if watermark_after:
            host.watermark(max_ts - bound_ms)
    for second in range(1, 20):  # idle from here: every due time is forced
        host.clock(START + second * 1_000)
    got = sorted((rule, user, ts, ids) for rule, user, ts, ids, _ in host.fires)
    assert got == oracle_fires(ALL_RULES, events)


def test_an_event_buffered_between_advances_leaves_the_user_pickled_until_it_is_read():
    """The element path of a busy user: its UserState (hundreds of buffered events and sequence
    steps) is copied as bytes, not unpickled and pickled again; `.user` merges what arrived in
    the engine's (ts, event_id) order."""
    state = HostState()
    state.user.pending[:] = [
        EngineEvent(10, "b", "a", None, {}),
        EngineEvent(30, "d", "a", None, {}),
    ]
    copy = pickle.loads(pickle.dumps(state))
    copy.arrive(EngineEvent(20, "c", "a", None, {}))
    copy.arrive(EngineEvent(10, "a", "a", None, {}))
    again = pickle.loads(pickle.dumps(copy))
    assert again._user is None and type(again._blob) is bytes  # never unpickled on the way
    assert [e.event_id for e in again.user.pending] == ["a", "b", "c", "d"]
    assert again.arrived == [] and type(again.user.pending[0]) is EngineEvent


def test_state_saved_before_goals_existed_restores_with_no_open_outcomes():
    # A HostState pickled by the layout before outcomes: (pending, rules, activity, timer,
    # ptimer, forced); a savepoint of that version must restore.
    event = EngineEvent(1, "e", "a", None, {})
    state = HostState.__new__(HostState)
    state.__setstate__(([event], {}, {}, 5, None, 7))
    assert state.user.pending == [event] and state.user.outcomes == []
    assert (state.timer, state.ptimer, state.forced) == (5, None, 7)


def test_a_processing_time_timer_that_can_force_nothing_is_deleted_not_left_to_fire():
    """Live input (event time near the wall clock): each buffered event needs a processing-time
    timer in case the input stops, but once the watermark has passed the event, that timer could
    only fire to re-register, a Python call per event. It is deleted, and the one the next
    deadline needs is registered; forcing still comes when the input stops."""
    host = FlinkHost(ABSENCE, idle_fire_after_ms=IDLE, now=START)
    host.watermark(START)
    host.event("s", START + 10, "a")  # buffered until the watermark passes START + 11
    assert processing_timers(host) == [round_up(START + 11 + IDLE)]
    host.service.now = START + 50
    host.watermark(START + 20)  # the event is matched: the absence deadline is START + 1010
    assert processing_timers(host) == [round_up(START + 1_010 + IDLE)]
    host.event("o", START + 30, "b", user="u2")  # matched, then nothing is due for u2
    host.service.now = START + 60
    host.watermark(START + 40)
    assert processing_timers(host, "u2") == []
    assert host.clock(START + 1_010 + IDLE - 1) == []  # the input stops
    assert host.clock(START + 1_010 + IDLE + 100) == [
        ("abs", "u1", START + 1_010, ("s",), START + 1_010 + IDLE + 100)
    ]


def processing_timers(host: FlinkHost, user: str = "u1") -> list[int]:
    return [t for t, key in host.service.timers(TimeDomain.PROCESSING_TIME) if key == user]
