"""What of an action goes into vendor event properties (shared by both adapters)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from schemas.action import Action

# Profile fields sent when the operator does not choose: personalisation, not contact details.
DEFAULT_PROFILE_FIELDS = ("first_name", "segment", "country")
# Contact details: only sent when named explicitly in the chosen fields.
CONTACT_FIELDS = frozenset({"email", "phone"})


def iso8601_ms(epoch_ms: int) -> str:
    """`1763805645123` -> `2025-11-22T10:00:45.123Z` (UTC, milliseconds, Z)."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


def chosen_profile(profile: Mapping[str, Any], fields: Iterable[str]) -> dict[str, Any]:
    return {name: profile[name] for name in fields if profile.get(name) is not None}


def event_properties(action: Action, profile_fields: Iterable[str]) -> dict[str, Any]:
    """Trigger properties, then the chosen profile fields, then our ids (ours win on a clash, so a
    consumer can always dedupe on `action_id`). None values are dropped: vendors reject nulls."""
    merged: dict[str, Any] = {}
    merged.update(action.properties)
    merged.update(chosen_profile(action.profile, profile_fields))
    merged["rule_id"] = action.rule_id
    merged["action_id"] = action.action_id
    return {key: value for key, value in merged.items() if value is not None}
