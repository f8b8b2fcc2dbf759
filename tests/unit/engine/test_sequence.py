from tests.unit.engine.conftest import ev, fires, make_rules

RULES = make_rules(
    {
        "id": "quick_add",
        "pattern": {
            "type": "sequence",
            "steps": [{"event_type": "product_view"}, {"event_type": "add_to_cart"}],
            "within": "10s",
        },
    }
)


def test_fires_on_the_last_step_with_its_ts():
    events = [
        ev("v", 1_000, "product_view"),
        ev("x", 2_000, "scroll"),
        ev("a", 5_000, "add_to_cart"),
    ]
    assert fires(RULES, events) == [("quick_add", "u1", 5_000, ("v", "a"))]


def test_window_edge():
    inside = [ev("v", 0, "product_view"), ev("a", 9_999, "add_to_cart")]
    outside = [ev("v", 0, "product_view"), ev("a", 10_000, "add_to_cart")]
    assert fires(RULES, inside) == [("quick_add", "u1", 9_999, ("v", "a"))]
    assert fires(RULES, outside) == []


def test_steps_must_come_in_order():
    assert fires(RULES, [ev("a", 0, "add_to_cart"), ev("v", 1, "product_view")]) == []


def test_equal_ts_orders_by_event_id():
    assert fires(RULES, [ev("a", 5, "product_view"), ev("b", 5, "add_to_cart")]) == [
        ("quick_add", "u1", 5, ("a", "b"))
    ]
    assert fires(RULES, [ev("b", 5, "product_view"), ev("a", 5, "add_to_cart")]) == []


def test_earliest_possible_start_is_used_and_consumed():
    events = [
        ev("v0", 0, "product_view"),
        ev("v5", 5_000, "product_view"),
        ev("a12", 12_000, "add_to_cart"),  # v0 is too old: v5 is the earliest possible start
        ev("a13", 13_000, "add_to_cart"),  # v5 was consumed; v0 is out of the window
    ]
    assert fires(RULES, events) == [("quick_add", "u1", 12_000, ("v5", "a12"))]


def test_each_completion_uses_the_oldest_open_start():
    events = [
        ev("v0", 0, "product_view"),
        ev("v1", 1, "product_view"),
        ev("a2", 2, "add_to_cart"),
        ev("a3", 3, "add_to_cart"),
        ev("a4", 4, "add_to_cart"),
    ]
    assert fires(RULES, events) == [
        ("quick_add", "u1", 2, ("v0", "a2")),
        ("quick_add", "u1", 3, ("v1", "a3")),
    ]


def test_three_steps_take_the_earliest_middle_step():
    rules = make_rules(
        {
            "id": "funnel",
            "pattern": {
                "type": "sequence",
                "steps": [{"event_type": "a"}, {"event_type": "b"}, {"event_type": "c"}],
                "within": "1s",
            },
        }
    )
    events = [
        ev("a1", 0, "a"),
        ev("b1", 10, "b"),
        ev("b2", 20, "b"),
        ev("c1", 30, "c"),
        ev("c2", 40, "c"),
    ]
    assert fires(rules, events) == [("funnel", "u1", 30, ("a1", "b1", "c1"))]


def test_an_event_serves_one_step_of_one_match():
    rules = make_rules(
        {
            "id": "double_view",
            "pattern": {
                "type": "sequence",
                "steps": [{"event_type": "v"}, {"event_type": "v"}],
                "within": "1s",
            },
        }
    )
    events = [ev(f"v{i}", i, "v") for i in range(5)]
    assert fires(rules, events) == [
        ("double_view", "u1", 1, ("v0", "v1")),
        ("double_view", "u1", 3, ("v2", "v3")),
    ]


def test_property_filters_on_steps():
    rules = make_rules(
        {
            "id": "deep_then_add",
            "pattern": {
                "type": "sequence",
                "steps": [
                    {"event_type": "page_view", "properties.scroll_depth": {"gte": 0.8}},
                    {"event_type": "add_to_cart", "device": ["mobile", "tablet"]},
                ],
                "within": "1m",
            },
        }
    )
    shallow = ev("p1", 0, "page_view", scroll_depth=0.5)
    deep = ev("p2", 1, "page_view", scroll_depth=0.9)
    add = ev("a", 2, "add_to_cart").model_copy(update={"device": "mobile"})
    add_desktop = ev("a", 2, "add_to_cart").model_copy(update={"device": "desktop"})
    assert fires(rules, [shallow, add]) == []
    assert fires(rules, [deep, add_desktop]) == []
    assert fires(rules, [shallow, deep, add]) == [("deep_then_add", "u1", 2, ("p2", "a"))]
