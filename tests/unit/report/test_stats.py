"""The report's statistics on hand-made outcome sets (jobs/report/stats.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jobs.report.stats import NO_CONTROL, OK, WORSE, compare, dedupe, summarise
from tests.unit.report.conftest import arm_outcomes, make_outcome


def by_arm(summaries):
    return {s.arm: s for s in summaries}


@pytest.mark.parametrize(
    "detections,conversions", [(1, 0), (1, 1), (10, 0), (10, 3), (10, 10), (2000, 300)]
)
def test_the_rate_interval_brackets_the_rate(detections, conversions):
    [summary] = summarise(arm_outcomes("treatment", detections, conversions))
    assert summary.detections == detections and summary.conversions == conversions
    assert summary.rate == conversions / detections
    assert 0 <= summary.rate_low <= summary.rate <= summary.rate_high <= 1
    assert summary.rate_low < summary.rate_high


def test_the_rate_interval_narrows_with_more_detections():
    [small] = summarise(arm_outcomes("treatment", 100, 10))
    [large] = summarise(arm_outcomes("treatment", 10_000, 1_000))
    assert small.rate == large.rate
    assert large.rate_high - large.rate_low < (small.rate_high - small.rate_low) / 5


@pytest.mark.parametrize(
    "treated,control",
    [
        ((150, 1000), (100, 1000)),
        ((0, 10), (0, 10)),
        ((10, 10), (10, 10)),
        ((0, 10), (5, 10)),
        ((3, 10), (0, 10)),
        ((1, 1), (0, 1)),
        ((40, 400), (10, 50)),
    ],
)
def test_the_lift_interval_brackets_the_difference(treated, control):
    lift = compare(*treated, *control)
    assert lift.difference == pytest.approx(treated[0] / treated[1] - control[0] / control[1])
    assert -1 <= lift.difference_low <= lift.difference <= lift.difference_high <= 1
    assert 0 <= lift.p_value <= 1


def test_the_p_value_falls_as_the_gap_grows_and_is_one_without_a_gap():
    p_values = [compare(100 + gap, 1000, 100, 1000).p_value for gap in (0, 10, 20, 40, 80)]
    assert p_values[0] == pytest.approx(1.0)
    assert p_values == sorted(p_values, reverse=True)
    assert p_values[-1] < 1e-6
    # Two-sided: the same gap the other way gives the same p-value.
    assert compare(60, 1000, 100, 1000).p_value == pytest.approx(
        compare(100, 1000, 60, 1000).p_value, rel=0.2
    )


def test_the_interval_excludes_zero_exactly_when_p_is_below_five_percent():
    for treated in range(0, 61, 3):
        lift = compare(treated, 300, 30, 300)
        excludes_zero = lift.difference_low > 0 or lift.difference_high < 0
        assert excludes_zero == (lift.p_value < 0.05), (treated, lift)


def test_the_lift_interval_covers_the_true_difference_about_95_percent_of_the_time():
    rng = np.random.default_rng(7)
    runs, n, p_control, p_treated = 1_000, 800, 0.10, 0.14
    covered = 0
    for _ in range(runs):
        lift = compare(int(rng.binomial(n, p_treated)), n, int(rng.binomial(n, p_control)), n)
        covered += lift.difference_low <= p_treated - p_control <= lift.difference_high
    assert 0.93 <= covered / runs <= 0.97


def test_relative_lift_and_its_interval():
    lift = compare(150, 1000, 100, 1000)
    assert lift.relative == pytest.approx(0.5)
    assert lift.relative_low < 0.5 < lift.relative_high
    assert compare(5, 100, 0, 100).relative is None  # control never converted
    assert compare(0, 100, 5, 100).relative == pytest.approx(-1.0)
    assert compare(0, 100, 5, 100).relative_low is None


def test_repeated_outcome_ids_count_once():
    outcomes = arm_outcomes("control", 100, 10) + arm_outcomes("treatment", 100, 20)
    redelivered = outcomes + outcomes[:50] + outcomes[150:]
    unique, repeats = dedupe(redelivered)
    assert len(unique) == 200 and repeats == 100
    assert summarise(redelivered) == summarise(outcomes)
    assert by_arm(summarise(redelivered))["treatment"].conversions == 20


def test_a_rule_without_experiment_gets_its_rate_and_time_to_goal_only():
    outcomes = arm_outcomes(None, 40, 10, rule_id="login_trouble", experiment=None)
    [summary] = summarise(outcomes)
    assert (summary.rule_id, summary.experiment, summary.arm) == ("login_trouble", None, None)
    assert summary.rate == 0.25 and summary.rate_low < 0.25 < summary.rate_high
    assert summary.lift is None and summary.guardrail is None
    assert summary.time_to_goal_median_ms == 5_500 and summary.time_to_goal_p90_ms == 9_100


def test_time_to_goal_counts_converted_outcomes_only():
    [summary] = summarise(arm_outcomes("treatment", 100, 10))
    assert summary.times_to_goal_ms == tuple(range(1_000, 10_001, 1_000))
    assert summary.time_to_goal_median_ms == 5_500
    assert summary.time_to_goal_p90_ms == pytest.approx(9_100)
    [never] = summarise(arm_outcomes("treatment", 10, 0))
    assert never.time_to_goal_median_ms is None and never.time_to_goal_p90_ms is None


def test_guardrail_verdicts():
    worse = by_arm(summarise(arm_outcomes("control", 1000, 200) + arm_outcomes("a", 1000, 100)))
    assert worse["a"].guardrail == WORSE and worse["a"].lift.difference_high < 0
    assert worse["control"].guardrail is None and worse["control"].lift is None
    noisy = by_arm(summarise(arm_outcomes("control", 100, 20) + arm_outcomes("a", 100, 15)))
    assert noisy["a"].guardrail == OK  # lower, but not significantly
    better = by_arm(summarise(arm_outcomes("control", 1000, 100) + arm_outcomes("a", 1000, 200)))
    assert better["a"].guardrail == OK and better["a"].lift.difference_low > 0
    [alone] = summarise(arm_outcomes("treatment", 100, 20))
    assert alone.guardrail == NO_CONTROL and alone.lift is None


def test_summaries_are_ordered_by_rule_then_control_first():
    outcomes = (
        arm_outcomes("b", 5, 1)
        + arm_outcomes("control", 5, 1)
        + arm_outcomes("a", 5, 1)
        + arm_outcomes(None, 5, 1, rule_id="a_rule", experiment=None)
    )
    keys = [(s.rule_id, s.arm) for s in summarise(outcomes)]
    assert keys == [
        ("a_rule", None),
        ("cart_silence", "control"),
        ("cart_silence", "a"),
        ("cart_silence", "b"),
    ]


def test_a_new_salt_is_another_experiment():
    old = arm_outcomes("control", 10, 1, experiment="old") + arm_outcomes(
        "a", 10, 5, experiment="old"
    )
    new = [make_outcome("n-1", "a", True, experiment="new")]
    summaries = summarise(old + new)
    assert [(s.experiment, s.arm) for s in summaries] == [
        ("new", "a"),
        ("old", "control"),
        ("old", "a"),
    ]
    assert summaries[0].guardrail == NO_CONTROL


def test_to_dict_is_json():
    summaries = summarise(arm_outcomes("control", 10, 1) + arm_outcomes("a", 10, 5))
    document = json.loads(json.dumps([s.to_dict() for s in summaries]))
    assert document[1]["lift"]["difference"] == pytest.approx(0.4)
    assert "times_to_goal_ms" not in document[0]
