"""The report's statistics, pure: outcome records in, one `ArmSummary` per (rule, experiment, arm)
out. Intervals and tests are statsmodels', at 95%:

- conversion rate: Wilson score interval;
- lift of a treated arm (every arm but `control`) over control: the difference of rates with the
  Agresti-Caffo interval and its Wald test on the same adjusted counts, so the interval excludes
  0 exactly when p < 0.05 (and both stay defined at 0% or 100%, where the score method fails);
  relative lift with the log-adjusted interval of the ratio, when both arms have conversions;
- time to goal of converted outcomes: median and 90th percentile (linear interpolation).

Outcomes are counted once per `outcome_id` (at-least-once delivery may repeat them). Every
detection counts, whatever its fate: comparing arms over all detections is the intent-to-treat
estimate DESIGN.md describes.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import numpy as np
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_confint,
    test_proportions_2indep,
)

from schemas.outcome import Outcome

CONTROL = "control"
ALPHA = 0.05
WORSE = "treatment significantly worse than control"
OK = "ok"
NO_CONTROL = "no control"


@dataclass(frozen=True)
class Lift:
    """A treated arm against its control (treated minus control)."""

    difference: float
    difference_low: float
    difference_high: float
    p_value: float
    relative: float | None  # difference / control rate; None when control never converted
    relative_low: float | None  # None unless both arms have conversions
    relative_high: float | None


@dataclass(frozen=True)
class ArmSummary:
    rule_id: str
    experiment: str | None
    arm: str | None  # None: the rule has no experiment
    detections: int
    conversions: int
    rate: float
    rate_low: float
    rate_high: float
    time_to_goal_median_ms: float | None
    time_to_goal_p90_ms: float | None
    lift: Lift | None = None  # treated arms with a control only
    guardrail: str | None = None  # treated arms: WORSE, OK or NO_CONTROL; None otherwise
    times_to_goal_ms: tuple[int, ...] = field(default=(), repr=False)

    def to_dict(self) -> dict:
        """The summary as JSON-ready values (the raw times to goal left out)."""
        values = {k: v for k, v in self.__dict__.items() if k not in ("lift", "times_to_goal_ms")}
        values["lift"] = None if self.lift is None else dict(self.lift.__dict__)
        return values


def dedupe(outcomes: Iterable[Outcome]) -> tuple[list[Outcome], int]:
    """The outcomes with each `outcome_id` once (its first record), and how many were repeats."""
    seen: set[str] = set()
    unique: list[Outcome] = []
    repeats = 0
    for outcome in outcomes:
        if outcome.outcome_id in seen:
            repeats += 1
            continue
        seen.add(outcome.outcome_id)
        unique.append(outcome)
    return unique, repeats


def summarise(outcomes: Iterable[Outcome]) -> list[ArmSummary]:
    """One summary per (rule, experiment, arm), sorted by rule, experiment, then control first and
    the other arms by name. Repeated outcome_ids count once."""
    groups: dict[tuple[str, str | None, str | None], list[Outcome]] = {}
    for outcome in dedupe(outcomes)[0]:
        groups.setdefault((outcome.rule_id, outcome.experiment, outcome.arm), []).append(outcome)
    arms = {key: _arm(key, members) for key, members in groups.items()}
    summaries = []
    for key in sorted(arms, key=_order):
        rule_id, experiment, arm = key
        summary = arms[key]
        if arm is not None and arm != CONTROL:
            control = arms.get((rule_id, experiment, CONTROL))
            summary = _with_lift(summary, control)
        summaries.append(summary)
    return summaries


def _order(key: tuple[str, str | None, str | None]) -> tuple:
    rule_id, experiment, arm = key
    return (rule_id, experiment or "", arm is not None, arm != CONTROL, arm or "")


def _arm(key: tuple[str, str | None, str | None], members: list[Outcome]) -> ArmSummary:
    rule_id, experiment, arm = key
    detections = len(members)
    times = tuple(
        sorted(o.time_to_goal_ms for o in members if o.converted and o.time_to_goal_ms is not None)
    )
    conversions = sum(1 for o in members if o.converted)
    low, high = proportion_confint(conversions, detections, alpha=ALPHA, method="wilson")
    median = p90 = None
    if times:
        median, p90 = (float(v) for v in np.percentile(times, [50, 90]))
    return ArmSummary(
        rule_id=rule_id,
        experiment=experiment,
        arm=arm,
        detections=detections,
        conversions=conversions,
        rate=conversions / detections,
        rate_low=float(low),
        rate_high=float(high),
        time_to_goal_median_ms=median,
        time_to_goal_p90_ms=p90,
        times_to_goal_ms=times,
    )


def _with_lift(treated: ArmSummary, control: ArmSummary | None) -> ArmSummary:
    if control is None:
        return replace(treated, guardrail=NO_CONTROL)
    lift = compare(treated.conversions, treated.detections, control.conversions, control.detections)
    verdict = WORSE if lift.difference_high < 0 else OK
    return replace(treated, lift=lift, guardrail=verdict)


def compare(
    treated_conversions: int,
    treated_detections: int,
    control_conversions: int,
    control_detections: int,
) -> Lift:
    """Treated minus control: the difference of rates, its interval and p-value, relative lift."""
    counts = (treated_conversions, treated_detections, control_conversions, control_detections)
    treated_rate = treated_conversions / treated_detections
    control_rate = control_conversions / control_detections
    with warnings.catch_warnings():
        # 0% or 100% in an arm divides by zero inside the ratio's variance: defined results here.
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = confint_proportions_2indep(
            *counts, method="agresti-caffo", compare="diff", alpha=ALPHA
        )
        p_value = test_proportions_2indep(*counts, method="agresti-caffo", compare="diff").pvalue
        relative_low = relative_high = None
        if treated_conversions and control_conversions:
            ratio_low, ratio_high = confint_proportions_2indep(
                *counts, method="log-adjusted", compare="ratio", alpha=ALPHA
            )
            relative_low, relative_high = float(ratio_low) - 1, float(ratio_high) - 1
    difference = treated_rate - control_rate
    return Lift(
        difference=difference,
        # The adjusted interval may reach past what a difference of rates can be.
        difference_low=max(-1.0, float(low)),
        difference_high=min(1.0, float(high)),
        p_value=min(1.0, float(p_value)),
        relative=difference / control_rate if control_rate else None,
        relative_low=relative_low,
        relative_high=relative_high,
    )
