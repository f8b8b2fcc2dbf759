"""Input for the activity filter's tests: users' events in an arrival order, with the watermark
and wall-clock time moving between them, as the filter meets them in Kafka mode. Used by the
oracle test of its Python model and by the record-by-record test against the Java class.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from hypothesis import strategies as st

from schemas.event import Event
from tests.unit.engine.conftest import make_rules
from udfs.activity_filter import MAX_WATERMARK, ActivityFilter, Emit, Record, Watermark

# "d" and "e" are activity: no rule's filters name them. "b" starts the 25 ms silence; "c"
# (unless) and "a" are filtered types that start nothing.
RULES = make_rules(
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
# Two silences: buckets of the smaller gap, two start types.
TWO_SILENCES = make_rules(
    {
        "id": "sil_b",
        "pattern": {"type": "silence", "start": {"event_type": "b"}, "gap": "40ms"},
    },
    {
        "id": "sil_a",
        "pattern": {
            "type": "silence",
            "start": {"event_type": "a"},
            "unless": {"event_type": "c"},
            "gap": "15ms",
        },
    },
)
RULE_SETS = {"mixed": RULES, "two_silences": TWO_SILENCES}


@dataclass(frozen=True)
class Step:
    """One thing the filter meets: a record, a watermark, or wall-clock time."""

    kind: str  # "record", "watermark" or "time"
    record: Record | None = None
    at: int = 0


@dataclass(frozen=True)
class Scenario:
    rules: str  # a key of RULE_SETS
    idle_fire_after_ms: int | None
    steps: tuple[Step, ...]


def scenario_steps(raw, bound_ms: int, jitter_ms: int, seed: int, idle_end: bool) -> list[Step]:
    """Events in an order jittered by up to `jitter_ms` (more than the bound makes some late);
    after a record, sometimes the watermark (max ts seen - bound) and sometimes wall-clock time
    moves. The input ends bounded (the final watermark) or idle (only wall-clock time moves)."""
    rng = random.Random(seed)
    events = [
        Event(event_id=f"e{i:03d}", user_id=user, event_type=event_type, ts=ts)
        for i, (user, ts, event_type, _) in enumerate(raw)
    ]
    decoded = {f"e{i:03d}": flag for i, (*_, flag) in enumerate(raw)}
    keyed = [
        (e.ts + rng.randrange(jitter_ms) if jitter_ms else e.ts, i) for i, e in enumerate(events)
    ]
    steps: list[Step] = []
    max_ts = watermark = None
    now = 0
    for _, i in sorted(keyed):
        e = events[i]
        steps.append(Step("record", record_of(e, decoded[e.event_id])))
        max_ts = e.ts if max_ts is None else max(max_ts, e.ts)
        if rng.random() < 0.5 and (watermark is None or max_ts - bound_ms > watermark):
            watermark = max_ts - bound_ms
            steps.append(Step("watermark", at=watermark))
        if rng.random() < 0.3:
            now += rng.randrange(250)
            steps.append(Step("time", at=now))
    if idle_end:
        steps.append(Step("time", at=now + 1_000_000))
    else:
        steps.append(Step("watermark", at=MAX_WATERMARK))
    return steps


def record_of(event: Event, decoded: bool) -> Record:
    """The keyed record of an event; one only Python decodes carries no type or ts for Java."""
    if decoded:
        return Record(event.user_id, True, event.event_type, event.ts, event)
    return Record(event.user_id, False, None, None, event)


@st.composite
def scenarios(draw, users=("u1", "u2")) -> Scenario:
    raw = draw(
        st.lists(
            st.tuples(
                st.sampled_from(users),
                st.integers(min_value=0, max_value=150),
                st.sampled_from(["a", "b", "c", "d", "d", "d", "e", "e"]),
                st.sampled_from([True, True, True, False]),
            ),
            max_size=80,
        )
    )
    bound_ms = draw(st.sampled_from([0, 7, 30, 100]))
    jitter_ms = draw(st.sampled_from([0, bound_ms, bound_ms, 2 * bound_ms + 20]))
    idle_fire_after_ms = draw(st.sampled_from([None, 1, 80, 800]))
    # An input may go idle only with idle forcing on: without it Python waits for the watermark.
    idle_end = idle_fire_after_ms is not None and draw(st.booleans())
    steps = scenario_steps(raw, bound_ms, jitter_ms, draw(st.integers()), idle_end)
    return Scenario(draw(st.sampled_from(sorted(RULE_SETS))), idle_fire_after_ms, tuple(steps))


def feed(model: ActivityFilter, step: Step) -> None:
    if step.kind == "record":
        model.process(step.record)
    elif step.kind == "watermark":
        model.advance_watermark(step.at)
    else:
        model.advance_processing_time(step.at)


def passed_on(model: ActivityFilter) -> list[Emit | Watermark]:
    """What the model passed on since the last call: records and watermarks, in order."""
    return [item for item in model.drain() if isinstance(item, Emit | Watermark)]
