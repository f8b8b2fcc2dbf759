"""The report as one self-contained HTML page: per rule, its table and two charts drawn by
matplotlib as inline SVG (conversion rate per arm with its 95% interval; the time-to-goal CDF of
each arm's conversions). Nothing is fetched: no script, font or image from the network.

Chart elements carry stable ids (`rate-bar-<arm>`, `time-to-goal-<arm>`) so a browser test can
find what was drawn.
"""

from __future__ import annotations

import html
import io
from itertools import groupby

from matplotlib import rc_context
from matplotlib.figure import Figure

from jobs.report.stats import ALPHA, WORSE, ArmSummary
from jobs.report.table import COLUMNS, row, title

_SVG_SETTINGS = {"svg.fonttype": "none", "svg.hashsalt": "moments-report", "font.size": 9}
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { padding: 0.25em 0.6em; border-bottom: 1px solid #ddd; text-align: right; }
td { white-space: nowrap; }
th:first-child, td:first-child, th:last-child, td:last-child { text-align: left; }
.charts { display: flex; flex-wrap: wrap; gap: 1em; }
.worse { color: #b00020; font-weight: bold; }
p.note { color: #555; font-size: 0.85em; max-width: 60em; }
"""
_NOTE = (
    "Every detection counts, whatever its fate (intent to treat); repeated outcome_ids count once. "
    "Rates: Wilson 95% intervals. Lift: treated minus control, Agresti-Caffo 95% interval and "
    "its two-sided test; relative lift: log-adjusted interval of the ratio. Time to goal: "
    "converted outcomes only."
)


def _label(summary: ArmSummary) -> str:
    return summary.arm if summary.arm is not None else "all"


def _svg(figure: Figure) -> str:
    buffer = io.StringIO()
    with rc_context(_SVG_SETTINGS):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # inline: no XML declaration or DOCTYPE


def rate_chart(members: list[ArmSummary]) -> str:
    """Bars of the conversion rate per arm, error bars at the 95% interval."""
    with rc_context(_SVG_SETTINGS):
        figure = Figure(figsize=(4.2, 3.0), layout="constrained")
        axes = figure.add_subplot()
        labels = [_label(s) for s in members]
        rates = [100 * s.rate for s in members]
        errors = [
            [100 * (s.rate - s.rate_low) for s in members],
            [100 * (s.rate_high - s.rate) for s in members],
        ]
        colours = [f"C{i}" for i in range(len(members))]
        bars = axes.bar(labels, rates, color=colours, yerr=errors, capsize=6, ecolor="#333")
        for bar, label in zip(bars, labels, strict=True):
            bar.set_gid(f"rate-bar-{label}")
        axes.set_ylabel("conversion rate (%)")
        axes.set_title(f"conversion rate, {100 * (1 - ALPHA):.0f}% interval")
        axes.set_ylim(bottom=0)
        return _svg(figure)


def _time_unit(longest_ms: float) -> tuple[str, float]:
    if longest_ms < 120_000:
        return "s", 1_000.0
    if longest_ms < 7_200_000:
        return "min", 60_000.0
    return "h", 3_600_000.0


def time_to_goal_chart(members: list[ArmSummary]) -> str:
    """The empirical CDF of time to goal of each arm's converted outcomes."""
    with rc_context(_SVG_SETTINGS):
        figure = Figure(figsize=(4.6, 3.0), layout="constrained")
        axes = figure.add_subplot()
        longest = max((max(s.times_to_goal_ms, default=0) for s in members), default=0)
        unit, scale = _time_unit(longest)
        for i, summary in enumerate(members):
            if not summary.times_to_goal_ms:
                continue
            line = axes.ecdf(
                [t / scale for t in summary.times_to_goal_ms],
                color=f"C{i}",
                label=f"{_label(summary)} ({summary.conversions:,})",
            )
            line.set_gid(f"time-to-goal-{_label(summary)}")
        axes.set_xlabel(f"time to goal ({unit})")
        axes.set_ylabel("share of conversions")
        axes.set_title("time to goal (CDF)")
        axes.set_xlim(left=0)
        if axes.lines:
            axes.legend(loc="lower right")
        return _svg(figure)


def _html_table(members: list[ArmSummary]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = []
    for summary in members:
        cells = "".join(f"<td>{html.escape(c)}</td>" for c in row(summary))
        worse = ' class="worse"' if summary.guardrail == WORSE else ""
        body.append(f"<tr{worse}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def render_html(summaries: list[ArmSummary], source: str, repeats: int = 0) -> str:
    """The whole page: a section per rule (and experiment)."""
    sections = []
    for (rule_id, _), group in groupby(summaries, key=lambda s: (s.rule_id, s.experiment)):
        members = list(group)
        sections.append(
            f'<section id="rule-{html.escape(rule_id)}"><h2>{html.escape(title(members[0]))}</h2>'
            f"{_html_table(members)}"
            f'<div class="charts">{rate_chart(members)}{time_to_goal_chart(members)}</div>'
            "</section>"
        )
    detections = sum(s.detections for s in summaries)
    repeated = f"; {repeats:,} repeated records counted once" if repeats else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>moments report</title>"
        f"<style>{_STYLE}</style></head><body>"
        f"<h1>moments report</h1><p>{html.escape(source)}: {detections:,} outcomes{repeated}.</p>"
        f'{"".join(sections)}<p class="note">{html.escape(_NOTE)}</p></body></html>\n'
    )
