"""DetectMoments, the Flink operator itself, without a JVM: its runtime context and timer context
are udfs/host.py's memory ones, so what it yields and counts is checked in milliseconds."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobs.connectors import payload as p
from jobs.operators import KIND_ACTION, KIND_LATE, LATE_TAG, DetectMoments
from moments_testing.release import JvmRelease
from schemas.event import Event
from tests.unit.engine.oracle import oracle_fires
from tests.unit.engine.test_ordering import ALL_RULES
from udfs.host import Counter, MemoryState, MemoryTimerService
from udfs.model import EngineEvent

MAX_WATERMARK = 2**63 - 1


class Metrics:
    def __init__(self) -> None:
        self.counters: dict[str, Counter] = {}
        self.groups: dict[tuple[str, str], Metrics] = {}

    def counter(self, name: str) -> Counter:
        return self.counters.setdefault(name, Counter())

    def add_group(self, key: str, value: str | None = None) -> Metrics:
        return self.groups.setdefault((key, value), Metrics())


class RuntimeContext:
    def __init__(self, service: MemoryTimerService):
        self.service = service
        self.states: dict[str, MemoryState] = {}
        self.metrics = Metrics()

    def get_state(self, descriptor) -> MemoryState:
        return self.states.setdefault(descriptor.name, MemoryState(self.service, pickled=True))

    def get_keyed_state_backend(self) -> MemoryTimerService:
        return self.service  # set_current_key: jobs.flink_compat.key_switch

    def get_metrics_group(self) -> Metrics:
        return self.metrics


class Operator:
    """A DetectMoments opened on memory state; elements and watermarks in, its output out."""

    def __init__(self, rules, **options):
        self.service = MemoryTimerService()
        self.runtime = RuntimeContext(self.service)
        self.function = DetectMoments(rules, state_ttl_ms=86_400_000, **options)
        self.function.open(self.runtime)
        self.out: list = []

    def element(self, event_id: str, ts: int, event_type: str, user: str = "u1") -> None:
        self.service.key = user
        raw = json.dumps({"event_id": event_id, "ts": ts})
        event = EngineEvent(ts, event_id, event_type, None, {})
        self.out += self.function.process_element((user, event, raw), self.service)

    def watermark(self, watermark: int) -> None:
        for timestamp in self.service.advance_watermark(watermark):
            self.out += self.function.on_timer(timestamp, self.service)

    def actions(self) -> list[dict]:
        return [json.loads(row[2]) for row in self.out if row[0] == KIND_ACTION]

    def count(self, name: str) -> int:
        return self.runtime.metrics.counters[name].count


def test_actions_late_rows_and_metrics():
    operator = Operator(ALL_RULES, event_time_detected_at=True)
    operator.element("s", 10, "a")
    operator.watermark(20)
    operator.element("late", 19, "a", user="u2")
    operator.watermark(100)
    tag, row = operator.out[0]
    assert (tag, tuple(row)) == (LATE_TAG, (KIND_LATE, "u2", '{"event_id": "late", "ts": 19}'))
    [action] = operator.actions()
    assert (action["rule_id"], action["user_id"], action["trigger_ts"]) == ("abs", "u1", 50)
    assert action["detected_at"] == 50  # the event time of the timer, in file replays
    assert (operator.count("processed"), operator.count("late")) == (1, 1)
    assert operator.runtime.metrics.groups[("rule", "abs")].counters["actions"].count == 1
    assert set(operator.runtime.states) == {"engine", "activity"}
    assert all(not state.values for state in operator.runtime.states.values())


streams = st.lists(
    st.tuples(
        st.sampled_from(["u1", "u2"]),
        st.integers(min_value=0, max_value=200),
        st.sampled_from(["a", "b", "c", "d", "d"]),
        st.booleans(),
    ),
    max_size=50,
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=streams)
def test_the_operator_in_order_gives_the_oracles_fires(raw):
    events = [
        Event(event_id=f"e{i:03d}", user_id=u, event_type=t, ts=ts)
        for i, (u, ts, t, _) in enumerate(raw)
    ]
    operator = Operator(ALL_RULES)
    for event, (*_, watermark_after) in sorted(zip(events, raw, strict=True), key=_by_ts):
        operator.element(event.event_id, event.ts, event.event_type, event.user_id)
        if watermark_after:
            operator.watermark(event.ts)
    operator.watermark(MAX_WATERMARK)
    got = sorted(
        (a["rule_id"], a["user_id"], a["trigger_ts"], tuple(a["event_ids"]))
        for a in operator.actions()
    )
    assert got == oracle_fires(ALL_RULES, events)


def _by_ts(pair):
    return pair[0].ts, pair[0].event_id


def _payload(event: Event) -> tuple:
    raw = json.dumps({"event_id": event.event_id, "user_id": event.user_id}).encode()
    fields = [None] * len(p.PAYLOAD_FIELDS)
    fields[p.USER_ID], fields[p.VALUE], fields[p.DECODED] = event.user_id, raw, True
    fields[p.TOPIC], fields[p.PARTITION], fields[p.OFFSET] = "events", 0, 0
    fields[p.EVENT_ID], fields[p.EVENT_TYPE], fields[p.TS] = (
        event.event_id,
        event.event_type,
        event.ts,
    )
    fields[p.PROPERTIES] = "{}"
    return tuple(fields)


def _kafka_run(events: list[Event], watermarks: list[bool], release: bool) -> Operator:
    """Kafka-mode rows through the operator, with the JVM release operator before it or not;
    the watermark trails the largest ts by 30 after the flagged events."""
    operator = Operator(ALL_RULES, decode_rows=True, event_time_detected_at=True)
    jvm = JvmRelease() if release else None

    def element(row) -> None:
        operator.service.key = row[p.USER_ID]
        operator.out += operator.function.process_element(row, operator.service)

    def advance(watermark: int) -> None:
        step = jvm.advance(watermark) if jvm is not None else None
        if step is not None:
            element(step)
        operator.watermark(watermark)

    top = None
    for event, watermark_after in zip(events, watermarks, strict=True):
        row = _payload(event)
        if jvm is None or not jvm.hold(row):
            element(row)
        top = event.ts if top is None else max(top, event.ts)
        if watermark_after:
            advance(top - 30)
    advance(MAX_WATERMARK)
    return operator


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    raw=st.lists(
        st.tuples(
            st.sampled_from(["u1", "u2", "u3"]),
            st.integers(min_value=0, max_value=200),
            st.sampled_from(["a", "b", "c", "d", "d"]),
            st.booleans(),
        ),
        max_size=60,
    )
)
def test_one_release_of_many_users_gives_what_their_timers_give(raw):
    """The JVM releases every user its timers passed as ONE record: the operator switches the
    keyed state to each user in turn and yields, late rows included, what its own timers give
    without the release, and what the oracle gives for the events on time."""
    events = [
        Event(event_id=f"e{i:03d}", user_id=u, event_type=t, ts=ts)
        for i, (u, ts, t, _) in enumerate(raw)
    ]
    watermarks = [w for *_, w in raw]
    timers = _kafka_run(events, watermarks, release=False)
    released = _kafka_run(events, watermarks, release=True)

    def outputs(operator):  # detected_at aside: a release's is its watermark, not ts + 1
        return sorted(repr((tag, _no_detected_at(row))) for tag, row in _tagged(operator.out))

    assert outputs(released) == outputs(timers)
    assert released.count("events_in") == timers.count("events_in") == len(events)
    late = {row[2] for tag, row in _tagged(timers.out) if tag == LATE_TAG}
    on_time = [e for e in events if _payload(e)[p.VALUE].decode() not in late]
    got = sorted(
        (a["rule_id"], a["user_id"], a["trigger_ts"], tuple(a["event_ids"]))
        for a in released.actions()
    )
    assert got == oracle_fires(ALL_RULES, on_time)
    # Every user's state is back where it belongs: nothing left once the input ended.
    assert all(not state.values for state in released.runtime.states.values())


def _no_detected_at(row) -> tuple:
    if row[0] != KIND_ACTION:
        return tuple(row)
    action = json.loads(row[2])
    del action["detected_at"]
    return row[0], row[1], action


def _tagged(out: list) -> list:
    return [item if isinstance(item, tuple) else (None, item) for item in out]
