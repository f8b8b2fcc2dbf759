"""Helpers for engine tests: build rules and events tersely, replay them, read the fires."""

from __future__ import annotations

import pytest

from schemas.event import Event
from schemas.rules import parse_rules
from udfs.engine import Engine
from udfs.replay import replay


def make_rules(*rules: dict) -> list:
    documents = []
    for rule in rules:
        rule = dict(rule)
        rule.setdefault("action", {"name": f"{rule['id']}_action", "destinations": ["kafka"]})
        documents.append(rule)
    return parse_rules({"rules": documents})


def ev(event_id: str, ts: int, event_type: str, user: str = "u1", **properties) -> Event:
    return Event(
        event_id=event_id, user_id=user, event_type=event_type, ts=ts, properties=properties
    )


def fires(rules: list, events: list, bound_ms: int = 2_000, activity_delay=None) -> list[tuple]:
    """(rule_id, user_id, trigger_ts, event_ids) of every action, in emission order."""
    return [
        (a.rule_id, a.user_id, a.trigger_ts, tuple(a.event_ids))
        for a in replay(Engine(rules), events, bound_ms, activity_delay)
    ]


@pytest.fixture
def run():
    return fires
