from tests.unit.engine.conftest import ev, fires, make_rules

RULES = make_rules(
    {
        "id": "login_trouble",
        "pattern": {
            "type": "count",
            "match": {"event_type": "login_failed"},
            "threshold": 3,
            "within": "2m",
        },
    }
)
WITHIN = 120_000


def test_fires_on_the_event_that_reaches_the_threshold():
    events = [ev("a", 0, "login_failed"), ev("b", 10, "login_failed"), ev("c", 20, "login_failed")]
    assert fires(RULES, events) == [("login_trouble", "u1", 20, ("a", "b", "c"))]


def test_span_one_ms_below_within_fires():
    events = [
        ev("a", 0, "login_failed"),
        ev("b", 1, "login_failed"),
        ev("c", WITHIN - 1, "login_failed"),
    ]
    assert fires(RULES, events) == [("login_trouble", "u1", WITHIN - 1, ("a", "b", "c"))]


def test_span_exactly_within_does_not_fire_and_the_window_slides():
    events = [
        ev("a", 0, "login_failed"),
        ev("b", 1, "login_failed"),
        ev("c", WITHIN, "login_failed"),
    ]
    assert fires(RULES, events) == []
    # a drops out at c, but b, c and a fourth event inside b's window still make three.
    events.append(ev("d", WITHIN, "login_failed"))
    assert fires(RULES, events) == [("login_trouble", "u1", WITHIN, ("b", "c", "d"))]


def test_counted_events_are_consumed():
    events = [ev(f"e{i}", i * 10, "login_failed") for i in range(8)]
    assert [f[3] for f in fires(RULES, events)] == [("e0", "e1", "e2"), ("e3", "e4", "e5")]


def test_other_event_types_and_other_users_do_not_count():
    events = [
        ev("a", 0, "login_failed"),
        ev("b", 1, "login_ok"),
        ev("c", 2, "login_failed", user="u2"),
        ev("d", 3, "login_failed"),
    ]
    assert fires(RULES, events) == []


def test_threshold_one_fires_on_every_match():
    rules = make_rules(
        {
            "id": "any_purchase",
            "pattern": {
                "type": "count",
                "match": {"event_type": "purchase"},
                "threshold": 1,
                "within": "1s",
            },
        }
    )
    events = [ev("a", 5, "purchase"), ev("b", 5, "purchase")]
    assert fires(rules, events) == [
        ("any_purchase", "u1", 5, ("a",)),
        ("any_purchase", "u1", 5, ("b",)),
    ]


def test_events_at_equal_ts_count_in_event_id_order():
    events = [ev("c", 7, "login_failed"), ev("a", 7, "login_failed"), ev("b", 7, "login_failed")]
    assert fires(RULES, events) == [("login_trouble", "u1", 7, ("a", "b", "c"))]
