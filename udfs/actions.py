"""Turning an engine Fire into an Action (DESIGN.md "Action contract")."""

from __future__ import annotations

from typing import Any

from schemas.action import Action, action_id
from schemas.rules import Rule
from udfs.campaign.assign import action_spec, arm_of
from udfs.model import Fire


def build_action(
    rule: Rule,
    user_id: str,
    fire: Fire,
    detected_at: int,
    profile: dict[str, Any] | None = None,
    enrichment: str = "skipped",
    rules_version: str | None = None,
) -> Action:
    """The action of a fire; with an experiment, the user's arm picks the variant's action spec."""
    arm = arm_of(rule, user_id) if rule.experiment is not None else None
    spec = rule.action if arm is None else action_spec(rule, arm)
    return Action(
        action_id=action_id(rule.id, user_id, fire.trigger_ts),
        rule_id=rule.id,
        action=spec.name,
        user_id=user_id,
        trigger_ts=fire.trigger_ts,
        detected_at=detected_at,
        event_ids=list(fire.event_ids),
        destinations=list(spec.destinations),
        profile=profile or {},
        enrichment=enrichment,
        properties=dict(fire.properties or {}),
        campaign_id=spec.campaign_id,
        canvas_id=spec.canvas_id,
        workflow_id=spec.workflow_id,
        arm=arm,
        experiment=rule.salt,
        rules_version=rules_version,
    )
