"""The action contract: one message on the actions topic, or one JSONL line (DESIGN.md)."""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Enrichment = Literal["ok", "missing", "unavailable", "skipped"]


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

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()
