"""The text table of `moments report` (jobs/report/table.py)."""

from __future__ import annotations

from pathlib import Path

from jobs.report.stats import summarise
from jobs.report.table import duration, format_table
from tests.unit.report.conftest import arm_outcomes

EXPECTED = Path(__file__).with_name("expected_table.txt")


def test_the_table_has_a_block_per_rule_and_a_row_per_arm():
    outcomes = (
        arm_outcomes("control", 1000, 100)
        + arm_outcomes("a", 1000, 150)
        + arm_outcomes(None, 40, 10, rule_id="login_trouble", experiment=None)
    )
    assert format_table(summarise(outcomes)) + "\n" == EXPECTED.read_text()


def test_a_worse_arm_says_so():
    outcomes = arm_outcomes("control", 1000, 200) + arm_outcomes("treatment", 1000, 100)
    last = format_table(summarise(outcomes)).splitlines()[-1]
    assert last.startswith("treatment") and "-10.00pp" in last
    assert last.endswith("treatment significantly worse than control")


def test_an_arm_without_conversions_has_no_time_to_goal():
    outcomes = arm_outcomes("control", 10, 0) + arm_outcomes("treatment", 10, 0)
    rows = format_table(summarise(outcomes)).splitlines()
    assert rows[2].split()[-3:] == ["-", "-", "-"]
    assert rows[3].split()[-3:] == ["-", "-", "ok"]


def test_durations_are_rounded_for_reading():
    assert [duration(v) for v in (None, 850, 12_340, 252_000, 5_400_000)] == [
        "-",
        "850ms",
        "12.3s",
        "4.2m",
        "1.5h",
    ]
