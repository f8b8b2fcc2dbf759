from tests.unit.engine.conftest import ev, fires, make_rules

RULES = make_rules(
    {
        "id": "cart_silence",
        "pattern": {
            "type": "silence",
            "start": {"event_type": "add_to_cart"},
            "unless": {"event_type": ["checkout_started", "purchase"]},
            "gap": "45s",
        },
    }
)
GAP = 45_000


def test_fires_gap_after_the_start_when_nothing_follows():
    assert fires(RULES, [ev("s", 100, "add_to_cart")]) == [
        ("cart_silence", "u1", 100 + GAP, ("s",))
    ]


def test_any_event_of_the_user_moves_the_deadline():
    events = [ev("s", 0, "add_to_cart"), ev("x", 30_000, "page_view"), ev("y", 70_000, "scroll")]
    assert fires(RULES, events) == [("cart_silence", "u1", 70_000 + GAP, ("s",))]


def test_event_one_ms_before_the_deadline_moves_it():
    events = [ev("s", 0, "add_to_cart"), ev("x", GAP - 1, "page_view")]
    assert fires(RULES, events) == [("cart_silence", "u1", 2 * GAP - 1, ("s",))]


def test_event_at_the_deadline_comes_after_the_fire():
    events = [ev("s", 0, "add_to_cart"), ev("x", GAP, "page_view")]
    assert fires(RULES, events) == [("cart_silence", "u1", GAP, ("s",))]


def test_other_users_do_not_move_the_deadline():
    events = [ev("s", 0, "add_to_cart"), ev("x", 30_000, "page_view", user="u2")]
    assert fires(RULES, events) == [("cart_silence", "u1", GAP, ("s",))]


def test_unless_disarms_and_wins_over_start():
    assert fires(RULES, [ev("s", 0, "add_to_cart"), ev("c", 10, "purchase")]) == []
    both = make_rules(
        {
            "id": "s2",
            "pattern": {
                "type": "silence",
                "start": {"event_type": "a"},
                "unless": {"properties.final": True},
                "gap": "1s",
            },
        }
    )
    assert fires(both, [ev("x", 0, "a", final=True)]) == []
    assert fires(both, [ev("x", 0, "a", final=False)]) == [("s2", "u1", 1_000, ("x",))]


def test_events_before_the_start_do_not_arm():
    assert fires(RULES, [ev("x", 0, "page_view")]) == []


def test_a_later_start_is_the_one_named():
    events = [ev("s1", 0, "add_to_cart"), ev("s2", 10_000, "add_to_cart")]
    assert fires(RULES, events) == [("cart_silence", "u1", 10_000 + GAP, ("s2",))]


def test_rearms_after_firing():
    events = [ev("s1", 0, "add_to_cart"), ev("s2", 100_000, "add_to_cart")]
    assert fires(RULES, events) == [
        ("cart_silence", "u1", GAP, ("s1",)),
        ("cart_silence", "u1", 100_000 + GAP, ("s2",)),
    ]


def test_silence_start_types_bound_what_the_jvm_filter_may_skip():
    from udfs.engine import Engine

    assert Engine(RULES).silence_start_types() == frozenset({"add_to_cart"})
    any_start = make_rules(
        {
            "id": "quiet",
            "pattern": {"type": "silence", "start": {"device": "mobile"}, "gap": "1s"},
        }
    )
    # A start that may be any type: every activity may follow a start, none is skipped.
    assert Engine(any_start).silence_start_types() is None
