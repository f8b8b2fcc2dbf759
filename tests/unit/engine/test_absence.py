from tests.unit.engine.conftest import ev, fires, make_rules

RULES = make_rules(
    {
        "id": "no_checkout",
        "pattern": {
            "type": "absence",
            "start": {"event_type": "add_to_cart"},
            "missing": {"event_type": "checkout_started"},
            "within": "45s",
        },
    }
)
WITHIN = 45_000


def test_fires_at_the_deadline_with_trigger_ts_the_deadline():
    assert fires(RULES, [ev("s", 1_000, "add_to_cart")]) == [
        ("no_checkout", "u1", 1_000 + WITHIN, ("s",))
    ]


def test_missing_event_one_ms_before_the_deadline_disarms():
    events = [ev("s", 0, "add_to_cart"), ev("m", WITHIN - 1, "checkout_started")]
    assert fires(RULES, events) == []


def test_missing_event_at_the_deadline_is_too_late():
    events = [ev("s", 0, "add_to_cart"), ev("m", WITHIN, "checkout_started")]
    assert fires(RULES, events) == [("no_checkout", "u1", WITHIN, ("s",))]


def test_missing_event_at_the_start_ts_counts_only_after_the_start_in_order():
    # Same ts: event_id order decides. "m0" sorts before "s": it precedes the start.
    assert fires(RULES, [ev("s", 0, "add_to_cart"), ev("m0", 0, "checkout_started")]) == [
        ("no_checkout", "u1", WITHIN, ("s",))
    ]
    assert fires(RULES, [ev("a", 0, "add_to_cart"), ev("m", 0, "checkout_started")]) == []


def test_each_start_rearms_the_deadline():
    events = [ev("s1", 0, "add_to_cart"), ev("s2", 10_000, "add_to_cart")]
    assert fires(RULES, events) == [("no_checkout", "u1", 10_000 + WITHIN, ("s2",))]


def test_fires_before_an_event_at_the_deadline_that_rearms():
    events = [ev("s1", 0, "add_to_cart"), ev("s2", WITHIN, "add_to_cart")]
    assert fires(RULES, events) == [
        ("no_checkout", "u1", WITHIN, ("s1",)),
        ("no_checkout", "u1", 2 * WITHIN, ("s2",)),
    ]


def test_fires_when_the_watermark_reaches_the_deadline_not_only_at_the_end():
    # Another user's events move event time: the deadline fires while the stream goes on.
    from schemas.event import Event
    from udfs.engine import Engine
    from udfs.replay import Replay

    seen = []
    replay = Replay(Engine(RULES), 0, on_action=seen.append)
    replay.push(ev("s", 0, "add_to_cart"))
    replay.push(ev("x", WITHIN - 1, "noise", user="u2"))
    assert seen == []
    replay.push(Event(event_id="y", user_id="u2", event_type="noise", ts=WITHIN))
    assert [(a.trigger_ts, a.detected_at) for a in seen] == [(WITHIN, WITHIN)]


def test_an_event_both_missing_and_start_disarms_only():
    rules = make_rules(
        {
            "id": "no_repeat",
            "pattern": {
                "type": "absence",
                "start": {"event_type": ["a", "b"]},
                "missing": {"event_type": "b"},
                "within": "1s",
            },
        }
    )
    assert fires(rules, [ev("1", 0, "a"), ev("2", 10, "b")]) == []
    assert fires(rules, [ev("2", 10, "b")]) == []
