"""The JVM activity filter's model (udfs/activity_filter.py): the engine fed only what it passes
on gives the naive oracle's actions for everything, and it keeps most activity from Python."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from schemas.event import Event
from tests.unit.engine.activity_scenarios import (
    RULE_SETS,
    RULES,
    Scenario,
    Step,
    feed,
    passed_on,
    record_of,
    scenario_steps,
    scenarios,
)
from tests.unit.engine.conftest import ev
from tests.unit.engine.oracle import oracle_fires
from udfs.activity_filter import (
    MAX_WATERMARK,
    PENDING,
    ActivityFilter,
    Emit,
    Timer,
    Watermark,
    filter_settings,
)
from udfs.engine import Engine
from udfs.replay import Replay
from udfs.timing import TIMER_GRID_MS, bucket_end_delay, round_up

# Python's side takes its watermark from the filter's output only: its own (max_ts - bound)
# must never move it, so the bound is out of reach.
NO_BOUND = 2**62


def behind_the_filter(scenario: Scenario):
    """Runs the scenario through the model and the engine behind it (as the Flink operator
    hosts it: activity wakes a user at its bucket's end plus the user's delay). Returns the
    fires, the events on time at the filter, and both sides."""
    engine = Engine(RULE_SETS[scenario.rules])
    config = filter_settings(engine, scenario.idle_fire_after_ms)
    model = ActivityFilter(config)
    actions = []
    python = Replay(
        engine,
        NO_BOUND,
        on_action=actions.append,
        activity_delay=lambda user: bucket_end_delay(user, config.bucket_end_spread_ms),
    )
    on_time = []
    for step in scenario.steps:
        if step.kind == "record" and step.record.item.ts >= model.watermark:
            on_time.append(step.record.item)
        feed(model, step)
        for item in passed_on(model):
            if isinstance(item, Emit):
                python.push(item.record.item)
            else:
                python.advance_to(item.ts)
    python.finish()
    fires = [(a.rule_id, a.user_id, a.trigger_ts, tuple(a.event_ids)) for a in actions]
    return fires, on_time, model, python


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios())
def test_the_engine_behind_the_filter_matches_the_oracle(scenario):
    fires, on_time, model, python = behind_the_filter(scenario)
    assert sorted(fires) == oracle_fires(RULE_SETS[scenario.rules], on_time)
    # Python finds late exactly what the filter found late (it passes those on).
    records = sum(1 for s in scenario.steps if s.kind == "record")
    assert python.counts.late == records - len(on_time)
    assert python.counts.read + model.skipped + model.held == records
    if scenario.steps[-1].kind == "watermark":
        assert model.held == 0  # the final watermark releases or drops everything
    else:  # idle: the flush released every pending latest (what is held waits for a start)
        pending = [e for u in model.users.values() for e in u.buckets.values() if e[PENDING]]
        assert pending == []


def _dense(users=("u1", "u2")):
    """Each user: a start, then activity every 2 ms for 200 ms, in order."""
    raw = []
    for user in users:
        raw.append((user, 0, "b", True))
        raw += [(user, ts, "d" if ts % 4 else "e", True) for ts in range(1, 200, 2)]
    return raw


def test_dense_activity_mostly_stays_in_the_jvm_and_changes_no_action():
    for jitter_ms in (0, 10):
        steps = scenario_steps(_dense(), bound_ms=10, jitter_ms=jitter_ms, seed=1, idle_end=False)
        fires, on_time, model, python = behind_the_filter(Scenario("mixed", None, tuple(steps)))
        assert sorted(fires) == oracle_fires(RULES, on_time) and len(on_time) == 202
        if jitter_ms == 0:
            # In order: per user the start and each 25 ms bucket's earliest and latest pass.
            assert python.counts.read == 2 * (1 + 2 * 8)
        assert python.counts.read < 202 // 4
        assert python.counts.read + model.skipped == 202


def _model(idle_fire_after_ms=800) -> ActivityFilter:
    return ActivityFilter(filter_settings(Engine(RULES), idle_fire_after_ms))


def _ids(items) -> list:
    return [i.record.item.event_id if isinstance(i, Emit) else i for i in items]


def _run(model, *steps) -> list:
    for step in steps:
        feed(model, step)
    return _ids(passed_on(model))


def _rec(event: Event, decoded: bool = True) -> Step:
    return Step("record", record_of(event, decoded))


def test_activity_before_any_start_is_held_and_a_start_before_it_releases_it():
    model = _model()
    # Activity at 100 and 120 (one bucket) and 110 between them, then a start at 50.
    got = _run(model, _rec(ev("a1", 100, "d")), _rec(ev("a2", 120, "d")), _rec(ev("a3", 110, "d")))
    assert got == [] and (model.held, model.skipped) == (2, 1)
    # Released as if they arrived now: the earliest goes, the latest waits for the watermark.
    assert _run(model, _rec(ev("s", 50, "b"))) == ["s", "a1"]
    assert (model.held, model.skipped) == (1, 1)
    assert _run(model, Step("watermark", at=121)) == ["a2", Watermark(121)]


def test_an_undecoded_record_may_be_a_start_at_any_time():
    model = _model()
    assert _run(model, _rec(ev("a1", 100, "d")), _rec(ev("x", 500, "d"), decoded=False)) == [
        "x",
        "a1",
    ]


def test_held_activity_the_watermark_passes_is_dropped():
    model = _model()
    assert _run(model, _rec(ev("a1", 100, "d")), Step("watermark", at=101)) == [Watermark(101)]
    assert (model.held, model.skipped) == (0, 1)
    # A start at 90 is late now: it starts nothing, and releases nothing.
    assert _run(model, _rec(ev("s", 90, "b"))) == ["s"]


def test_after_the_start_the_first_of_a_bucket_goes_and_the_latest_waits_for_the_watermark():
    model = _model(idle_fire_after_ms=None)
    steps = [_rec(ev("s", 0, "b")), _rec(ev("a1", 10, "d")), _rec(ev("a2", 20, "d"))]
    assert _run(model, *steps, _rec(ev("a3", 15, "e")), _rec(ev("a0", 5, "d"))) == [
        "s",
        "a1",
        "a0",
    ]
    assert _run(model, Step("watermark", at=20)) == [Watermark(20)]
    # Emitted before the watermark that passes it: Python still sees it on time.
    assert _run(model, Step("watermark", at=21)) == ["a2", Watermark(21)]
    assert _run(model, Step("time", at=10**9)) == []  # no flush without idle forcing


def test_the_flush_releases_a_pending_latest_on_the_timer_grid():
    model = _model(idle_fire_after_ms=800)  # flush after 100 ms
    _run(model, Step("time", at=1_234), _rec(ev("s", 0, "b")), _rec(ev("a1", 10, "d")))
    feed(model, _rec(ev("a2", 20, "d")))
    assert Timer("processing", "u1", round_up(1_234 + 100)) in model.drain()
    assert round_up(1_234 + 100) == 1_400
    assert _run(model, Step("time", at=1_399)) == []
    assert _run(model, Step("time", at=1_400)) == ["a2"]


def test_a_bucket_ends_for_the_filter_when_it_ends_for_the_python_operator():
    model = _model()
    feed(model, _rec(ev("s", 0, "b", user="user-7")))
    feed(model, _rec(ev("a1", 30, "d", user="user-7")))
    delay = bucket_end_delay("user-7", 25)
    assert delay == 20  # CRC-32 ("user-7") % 25: the Java side must agree (the JVM test checks)
    assert Timer("event", "user-7", 50 + delay) in model.drain()
    assert _run(model, Step("watermark", at=69)) == [Watermark(69)]
    assert model.users["user-7"].buckets
    assert _run(model, Step("watermark", at=70)) == [Watermark(70)]
    assert model.users["user-7"].buckets == {}


def test_no_filter_without_activity():
    no_silence = [r for r in RULES if r.id != "sil"]
    assert filter_settings(Engine(no_silence), 800) is None
    settings_ = filter_settings(Engine(RULES), 800)
    assert (settings_.bucket_ms, settings_.flush_after_ms) == (25, 100)
    assert settings_.start_types == frozenset({"b"})
    assert filter_settings(Engine(RULES), None).flush_after_ms == 0


def test_the_flush_comes_well_before_python_may_force_an_idle_user():
    # Python forces event time only after idle_fire_after without input; the flush is due
    # flush_after_ms after the held record arrived, plus at most one grid step.
    for idle_fire_after_ms in (150, 2_000, 60_000):
        flush = filter_settings(Engine(RULES), idle_fire_after_ms).flush_after_ms
        assert flush + TIMER_GRID_MS < idle_fire_after_ms
        assert max(round_up(t + flush) - t for t in range(1_000, 1_200)) <= flush + TIMER_GRID_MS


def test_the_final_watermark_releases_everything_pending():
    model = _model()
    steps = [_rec(ev("s", 0, "b")), _rec(ev("a1", 10, "d")), _rec(ev("a2", 20, "d"))]
    assert _run(model, *steps, Step("watermark", at=MAX_WATERMARK)) == [
        "s",
        "a1",
        "a2",
        Watermark(MAX_WATERMARK),
    ]
    assert model.held == 0 and model.users["u1"].buckets == {}
