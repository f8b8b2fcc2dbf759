import pytest

from schemas.rules import RuleFileError, parse_rules
from udfs.filters import compile_filter
from udfs.model import EngineEvent


def _event(event_type="view", device=None, **properties):
    return EngineEvent(0, "e", event_type, device, properties)


@pytest.mark.parametrize(
    ("spec", "event", "expected"),
    [
        ({}, _event(), True),
        ({"event_type": "view"}, _event(), True),
        ({"event_type": "view"}, _event("add"), False),
        ({"event_type": ["add", "view"]}, _event(), True),
        ({"device": "mobile"}, _event(device="mobile"), True),
        ({"device": "mobile"}, _event(), False),
        ({"properties.sku": "J-1"}, _event(sku="J-1"), True),
        ({"properties.sku": "J-1"}, _event(sku="J-2"), False),
        ({"properties.depth": {"gt": 0.5}}, _event(depth=0.6), True),
        ({"properties.depth": {"gt": 0.5}}, _event(depth=0.5), False),
        ({"properties.depth": {"gte": 0.5}}, _event(depth=0.5), True),
        ({"properties.depth": {"lt": 3}}, _event(depth=2.9), True),
        ({"properties.depth": {"lte": 3}}, _event(depth=3), True),
        ({"properties.depth": {"gte": 1, "lt": 5}}, _event(depth=5), False),
        ({"properties.depth": {"gt": 1}}, _event(depth="9"), False),  # string vs number: false
        ({"properties.depth": {"gt": 1}}, _event(), False),  # missing: false
        ({"properties.depth": {"ne": 1}}, _event(depth=2), True),
        ({"properties.depth": {"ne": 1}}, _event(depth=1), False),
        ({"properties.depth": {"ne": 1}}, _event(), True),  # missing is "not equal"
        ({"properties.vip": {"exists": True}}, _event(vip=None), True),
        ({"properties.vip": {"exists": True}}, _event(), False),
        ({"properties.vip": {"exists": False}}, _event(), True),
        ({"properties.vip": True}, _event(vip=1), False),  # booleans equal only booleans
        ({"properties.n": 1}, _event(n=1.0), True),
        ({"properties.name": {"gte": "m"}}, _event(name="z"), True),
        ({"event_type": "view", "device": "web"}, _event(device="ios"), False),
    ],
)
def test_filter(spec, event, expected):
    parse_rules(
        {
            "rules": [
                {
                    "id": "r",
                    "pattern": {"type": "count", "match": spec, "threshold": 1, "within": "1s"},
                    "action": {"name": "a", "destinations": ["kafka"]},
                }
            ]
        }
    )
    assert compile_filter(spec)(event) is expected


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ({"color": "red"}, "unknown filter key 'color'"),
        ({"properties.": 1}, "unknown filter key"),
        ({"event_type": []}, "an empty list"),
        ({"properties.x": {"between": [1, 2]}}, "unknown operator 'between'"),
        ({"properties.x": {"exists": "yes"}}, "exists takes true or false"),
        ({"properties.x": {"gt": [1]}}, "expected a scalar"),
        ({"properties.x": None}, "expected a scalar"),
    ],
)
def test_invalid_filters_are_rejected(spec, reason):
    with pytest.raises(RuleFileError) as error:
        parse_rules(
            {
                "rules": [
                    {
                        "id": "r",
                        "pattern": {"type": "count", "match": spec, "threshold": 1, "within": "1s"},
                        "action": {"name": "a", "destinations": ["kafka"]},
                    }
                ]
            }
        )
    assert reason in str(error.value)
    assert str(error.value).startswith("rule r: pattern.match")
