"""The action contract: one message on the actions topic, or one JSONL line (DESIGN.md)."""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Enrichment = Literal["ok", "missing", "unavailable", "skipped"]
#: Why a detection was not sent (DESIGN.md "Fate of a detection", in the order decided).
Suppression = Literal["audience", "no_profile", "quiet_hours", "cap", "control"]
#: A detection's fate: sent, deferred (quiet hours), or the reason it was suppressed.
Fate = Literal["sent", "deferred", "audience", "no_profile", "quiet_hours", "cap", "control"]


def action_id(rule_id: str, user_id: str, trigger_ts: int) -> str:
    """sha256 hex of `rule_id|user_id|trigger_ts`: the same detection always has the same id."""
    return hashlib.sha256(f"{rule_id}|{user_id}|{trigger_ts}".encode()).hexdigest()


class Action(BaseModel):
    model_config = ConfigDict(extra="allow")

    action_id: str = Field(description="sha256 hex of rule_id|user_id|trigger_ts.")
    rule_id: str
    action: str = Field(description="The rule's action name.")
    user_id: str
    trigger_ts: int = Field(description="Event time of the detection, epoch milliseconds.")
    detected_at: int = Field(
        description="When it was detected, epoch ms: wall-clock in a live job, the replay's "
        "event time in a backtest or file replay."
    )
    event_ids: list[str] = Field(description="The events that made the match.")
    destinations: list[Literal["kafka", "braze", "iterable"]]
    profile: dict[str, Any] = Field(default_factory=dict, description="CRM profile, if found.")
    enrichment: Enrichment = Field(
        description="ok, missing (no CRM row), unavailable (CRM down or timed out), or skipped "
        "(no CRM configured, e.g. a backtest)."
    )
    properties: dict[str, Any] = Field(
        default_factory=dict,
        description="Properties of the event that completed the match (the start event for "
        "absence/silence), passed on to vendors.",
    )
    campaign_id: str | None = None
    canvas_id: str | None = None
    workflow_id: int | str | None = None
    arm: str | None = Field(
        None,
        description="The user's arm (control, treatment or a variant); null without an experiment.",
    )
    experiment: str | None = Field(None, description="The experiment's salt; null without one.")
    deliver_at: int | None = Field(
        None, description="Deferred by quiet hours: deliver at this epoch ms (null: now)."
    )
    rules_version: str | None = Field(
        None, description="The rules version in force at trigger_ts (live rules)."
    )
    suppressed: Suppression | None = Field(
        None, description="Only on the suppressed-actions output: why it was not sent."
    )

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()
