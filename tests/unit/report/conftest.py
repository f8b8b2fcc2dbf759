"""Hand-made and simulated outcome records for the report's tests."""

from __future__ import annotations

import random

import pytest

from schemas.action import action_id
from schemas.outcome import Outcome, outcome_id

TRIGGER_TS = 1_763_805_600_000


def make_outcome(
    user: str,
    arm: str | None = "treatment",
    converted: bool = False,
    time_to_goal_ms: int | None = None,
    rule_id: str = "cart_silence",
    experiment: str | None = "cart-2026-12",
    trigger_ts: int = TRIGGER_TS,
) -> Outcome:
    """One outcome; `time_to_goal_ms` defaults to 60 s for a conversion."""
    if converted and time_to_goal_ms is None:
        time_to_goal_ms = 60_000
    the_action = action_id(rule_id, user, trigger_ts)
    return Outcome(
        outcome_id=outcome_id(the_action),
        action_id=the_action,
        rule_id=rule_id,
        user_id=user,
        experiment=experiment if arm is not None else None,
        arm=arm,
        fate="control" if arm == "control" else "sent",
        trigger_ts=trigger_ts,
        converted=converted,
        goal_ts=trigger_ts + time_to_goal_ms if converted else None,
        time_to_goal_ms=time_to_goal_ms if converted else None,
        goal_event_id=f"g-{user}" if converted else None,
    )


def arm_outcomes(arm: str | None, detections: int, conversions: int, **fields) -> list[Outcome]:
    """`detections` outcomes of one arm, the first `conversions` converted (1 s, 2 s, ...)."""
    return [
        make_outcome(
            f"{arm}-{i}",
            arm,
            converted=i < conversions,
            time_to_goal_ms=(i + 1) * 1_000 if i < conversions else None,
            **fields,
        )
        for i in range(detections)
    ]


def simulate(rates: dict[str, float], users: int, seed: int) -> list[Outcome]:
    """Outcomes drawn directly: each user in an arm uniformly at random, converting with the
    arm's true rate, time to goal exponential (mean 10 min) cut at the 1 h window."""
    rng = random.Random(seed)
    arms = list(rates)
    outcomes = []
    for n in range(users):
        arm = rng.choice(arms)
        converted = rng.random() < rates[arm]
        delay = min(3_599_999, int(rng.expovariate(1 / 600_000))) if converted else None
        outcomes.append(make_outcome(f"u-{n}", arm, converted, delay))
    return outcomes


@pytest.fixture
def outcome():
    return make_outcome
