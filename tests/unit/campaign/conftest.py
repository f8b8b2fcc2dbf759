"""Helpers for fate tests: rule sets with limits, and enriched actions built as a host would."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from schemas.action import Action, action_id
from schemas.rules import parse_rules
from udfs.campaign.assign import action_spec, arm_of


def make_rules(*rules: dict, limits: dict | None = None):
    documents = []
    for rule in rules:
        rule = dict(rule)
        rule.setdefault(
            "pattern",
            {"type": "count", "match": {"event_type": "x"}, "threshold": 1, "within": "1m"},
        )
        rule.setdefault("action", {"name": f"{rule['id']}_action", "destinations": ["kafka"]})
        if rule.get("experiment") is not None:
            rule.setdefault("goal", {"event_type": "purchase", "within": "1h"})
        documents.append(rule)
    document = {"rules": documents}
    if limits is not None:
        document["limits"] = limits
    return parse_rules(document)


def make_action(
    rule, ts: int, user: str = "u1", profile: dict | None = None, enrichment: str = "ok"
) -> Action:
    arm = arm_of(rule, user)
    spec = action_spec(rule, arm)
    return Action(
        action_id=action_id(rule.id, user, ts),
        rule_id=rule.id,
        action=spec.name,
        user_id=user,
        trigger_ts=ts,
        detected_at=ts,
        event_ids=[f"e-{ts}"],
        destinations=list(spec.destinations),
        profile=dict(profile or {}),
        enrichment=enrichment,
        arm=arm,
        experiment=rule.salt,
    )


def local_ms(text: str, zone: str, fold: int = 0) -> int:
    """Epoch ms of a local wall time, e.g. local_ms("2025-03-09T01:59", "America/New_York")."""
    moment = datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone), fold=fold)
    return int(moment.timestamp() * 1000)


def user_in_arm(rule, arm: str) -> str:
    """The first user u0, u1, ... whom `rule` puts in `arm`."""
    for i in range(10_000):
        if arm_of(rule, f"u{i}") == arm:
            return f"u{i}"
    raise AssertionError(f"no user in arm {arm}")
