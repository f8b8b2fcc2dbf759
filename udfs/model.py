"""The engine's own view of an event: only what rules read, cheap to build, pickle and compare."""

from __future__ import annotations

from typing import Any, NamedTuple


class EngineEvent(NamedTuple):
    """An event as the engine keeps it; tuples order by (ts, event_id), the matching order."""

    ts: int
    event_id: str
    event_type: str
    device: str | None
    properties: dict[str, Any]

    @classmethod
    def from_event(cls, event: Any) -> EngineEvent:
        """From a schemas.event.Event (or anything with the same attributes)."""
        return cls(event.ts, event.event_id, event.event_type, event.device, event.properties)


class Fire(NamedTuple):
    """One detection of one rule for one user, before it becomes an Action."""

    rule_id: str
    trigger_ts: int
    event_ids: tuple[str, ...]
    properties: dict[str, Any]
