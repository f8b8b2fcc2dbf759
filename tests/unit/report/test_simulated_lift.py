"""Outcomes simulated with a known true lift: the report recovers it within its 95% interval
(issue 15's acceptance figures: control 10%, treatment 15%, 20k users)."""

from __future__ import annotations

from jobs.report.stats import OK, summarise
from tests.unit.report.conftest import simulate


def test_a_true_lift_of_five_points_is_recovered_on_20k_users():
    summaries = {
        s.arm: s for s in summarise(simulate({"control": 0.10, "treatment": 0.15}, 20_000, seed=15))
    }
    lift = summaries["treatment"].lift
    assert lift.difference_low <= 0.05 <= lift.difference_high
    assert lift.difference_low > 0 and lift.p_value < 0.001
    assert summaries["treatment"].guardrail == OK
    assert summaries["control"].rate_low <= 0.10 <= summaries["control"].rate_high


def test_a_variant_without_true_lift_covers_zero():
    rates = {"control": 0.10, "a": 0.15, "b": 0.10}
    summaries = {s.arm: s for s in summarise(simulate(rates, 20_000, seed=16))}
    a, b = summaries["a"].lift, summaries["b"].lift
    assert a.difference_low <= 0.05 <= a.difference_high and a.difference_low > 0
    assert b.difference_low <= 0 <= b.difference_high
    assert summaries["b"].guardrail == OK
