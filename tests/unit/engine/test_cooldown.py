from tests.unit.engine.conftest import ev, fires, make_rules

COUNT = make_rules(
    {
        "id": "buys",
        "pattern": {
            "type": "count",
            "match": {"event_type": "buy"},
            "threshold": 2,
            "within": "1h",
        },
        "cooldown": "10s",
    }
)


def test_no_second_fire_before_the_cooldown_ends_and_one_at_its_end():
    suppressed = [ev("a", 0, "buy"), ev("b", 1, "buy"), ev("c", 5, "buy"), ev("d", 10_000, "buy")]
    assert fires(COUNT, suppressed) == [("buys", "u1", 1, ("a", "b"))]
    allowed = [ev("a", 0, "buy"), ev("b", 1, "buy"), ev("c", 5, "buy"), ev("d", 10_001, "buy")]
    assert fires(COUNT, allowed) == [
        ("buys", "u1", 1, ("a", "b")),
        ("buys", "u1", 10_001, ("c", "d")),
    ]


def test_a_suppressed_match_is_used_up():
    # c+d match during the cooldown and are consumed: e alone cannot fire after it.
    events = [
        ev("a", 0, "buy"),
        ev("b", 1, "buy"),
        ev("c", 2, "buy"),
        ev("d", 3, "buy"),
        ev("e", 20_000, "buy"),
    ]
    assert fires(COUNT, events) == [("buys", "u1", 1, ("a", "b"))]


def test_a_suppressed_match_does_not_restart_the_cooldown():
    events = [
        ev("a", 0, "buy"),
        ev("b", 1, "buy"),
        ev("c", 9_000, "buy"),
        ev("d", 9_001, "buy"),
        ev("e", 10_001, "buy"),
        ev("f", 10_002, "buy"),
    ]
    assert fires(COUNT, events) == [
        ("buys", "u1", 1, ("a", "b")),
        ("buys", "u1", 10_002, ("e", "f")),
    ]


def test_cooldown_is_per_user():
    events = [
        ev("a", 0, "buy"),
        ev("b", 1, "buy"),
        ev("c", 2, "buy", user="u2"),
        ev("d", 3, "buy", user="u2"),
    ]
    assert [f[1] for f in fires(COUNT, events)] == ["u1", "u2"]


def test_a_suppressed_deadline_is_disarmed():
    rules = make_rules(
        {
            "id": "idle",
            "pattern": {
                "type": "absence",
                "start": {"event_type": "cart"},
                "missing": {"event_type": "pay"},
                "within": "1s",
            },
            "cooldown": "1m",
        }
    )
    events = [ev("s1", 0, "cart"), ev("s2", 5_000, "cart"), ev("s3", 61_000, "cart")]
    assert fires(rules, events) == [("idle", "u1", 1_000, ("s1",)), ("idle", "u1", 62_000, ("s3",))]
