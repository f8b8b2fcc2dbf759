"""Building actions for the vendor tests."""

from __future__ import annotations

from typing import Any

from schemas.action import Action, action_id


def make_action(
    user_id: str = "u-1",
    trigger_ts: int = 1763805645123,
    rule_id: str = "cart_silence",
    destinations: tuple[str, ...] = ("kafka", "braze"),
    **extra: Any,
) -> Action:
    fields: dict[str, Any] = {
        "action_id": action_id(rule_id, user_id, trigger_ts),
        "rule_id": rule_id,
        "action": "cart_nudge",
        "user_id": user_id,
        "trigger_ts": trigger_ts,
        "detected_at": trigger_ts + 50,
        "event_ids": ["e-1"],
        "destinations": list(destinations),
        "profile": {
            "email": f"{user_id}@example.com",
            "phone": "+14155550100",
            "first_name": "Ada",
            "segment": "vip",
        },
        "enrichment": "ok",
        "properties": {"sku": "J-1", "price": 12.5},
    }
    fields.update(extra)
    return Action(**fields)


def many(count: int, **extra: Any) -> list[Action]:
    return [
        make_action(user_id=f"u-{i}", trigger_ts=1763805645123 + i, **extra) for i in range(count)
    ]
