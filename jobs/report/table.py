"""The report as a text table: one block per rule (and experiment), one row per arm. Rates in
percent, lifts in percentage points (pp), intervals at 95%, times to goal rounded."""

from __future__ import annotations

from itertools import groupby

from jobs.report.stats import ArmSummary

COLUMNS = (
    "arm",
    "detected",
    "converted",
    "rate [95% CI]",
    "lift [95% CI]",
    "p-value",
    "relative",
    "goal p50",
    "goal p90",
    "guardrail",
)
NONE = "-"


def percent(value: float) -> str:
    return f"{100 * value:.2f}%"


def rate_interval(low: float, high: float) -> str:
    return f"[{100 * low:.2f}, {100 * high:.2f}]"


def points(value: float) -> str:
    """A difference of rates in percentage points, signed."""
    return f"{100 * value:+.2f}pp"


def points_interval(low: float, high: float) -> str:
    return f"[{100 * low:+.2f}, {100 * high:+.2f}]"


def p_value(value: float) -> str:
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def duration(ms: float | None) -> str:
    """A time to goal, rounded for reading (850ms, 12.3s, 4.2m, 1.5h)."""
    if ms is None:
        return NONE
    if ms < 1_000:
        return f"{ms:.0f}ms"
    if ms < 60_000:
        return f"{ms / 1_000:.1f}s"
    if ms < 3_600_000:
        return f"{ms / 60_000:.1f}m"
    return f"{ms / 3_600_000:.1f}h"


def row(summary: ArmSummary) -> tuple[str, ...]:
    lift = summary.lift
    relative = NONE
    if lift is not None and lift.relative is not None:
        relative = f"{100 * lift.relative:+.1f}%"
    return (
        summary.arm if summary.arm is not None else "(no experiment)",
        f"{summary.detections:,}",
        f"{summary.conversions:,}",
        f"{percent(summary.rate)} {rate_interval(summary.rate_low, summary.rate_high)}",
        f"{points(lift.difference)} {points_interval(lift.difference_low, lift.difference_high)}"
        if lift
        else NONE,
        p_value(lift.p_value) if lift else NONE,
        relative,
        duration(summary.time_to_goal_median_ms),
        duration(summary.time_to_goal_p90_ms),
        summary.guardrail or NONE,
    )


def title(summary: ArmSummary) -> str:
    if summary.experiment is None:
        return f"rule {summary.rule_id} (no experiment)"
    return f"rule {summary.rule_id}, experiment {summary.experiment}"


def format_table(summaries: list[ArmSummary]) -> str:
    """Every rule's block, separated by a blank line; numbers right-aligned."""
    blocks = []
    for _, group in groupby(summaries, key=lambda s: (s.rule_id, s.experiment)):
        members = list(group)
        rows = [COLUMNS] + [row(s) for s in members]
        widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
        lines = [title(members[0])]
        for cells in rows:
            aligned = [
                cell.ljust(width) if i in (0, len(COLUMNS) - 1) else cell.rjust(width)
                for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
            ]
            lines.append("  ".join(aligned).rstrip())
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
