"""The outcome contract (DESIGN.md "Outcomes"): did a detection of a rule with a `goal` convert
within its window? One record per detection, every arm and every fate, emitted once."""

from __future__ import annotations

import hashlib

from pydantic import BaseModel, ConfigDict, Field

from schemas.action import Fate


def outcome_id(action_id: str) -> str:
    """sha256 hex of `action_id + '|outcome'`."""
    return hashlib.sha256(f"{action_id}|outcome".encode()).hexdigest()


class Outcome(BaseModel):
    model_config = ConfigDict(extra="allow")

    outcome_id: str = Field(description="sha256 hex of action_id + '|outcome'.")
    action_id: str
    rule_id: str
    user_id: str
    experiment: str | None = Field(description="The experiment's salt; null without one.")
    arm: str | None = Field(description="control, treatment or a variant; null without one.")
    fate: Fate = Field(description="The action's fate: sent, deferred or why it was suppressed.")
    trigger_ts: int
    converted: bool
    goal_ts: int | None = Field(description="The converting goal event's ts; null if none.")
    time_to_goal_ms: int | None = Field(description="goal_ts - trigger_ts; null if none.")
    goal_event_id: str | None = None
    rules_version: str | None = None

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json().encode()
