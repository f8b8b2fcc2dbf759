"""`moments validate RULES.yaml`: check a rules file; a line per rule, or every problem."""

from __future__ import annotations

import sys

from schemas.durations import format_duration_ms
from schemas.rules import Rule, RuleFileError, load_rules


def configure_parser(parser) -> None:
    parser.add_argument("rules", metavar="RULES.yaml", help="the rules file to check")


def _filter_text(spec: dict | None) -> str:
    if not spec:
        return "any event"
    return " & ".join(f"{k}={v}" for k, v in spec.items())


def summarize(rule: Rule) -> str:
    p = rule.pattern
    if p.type == "count":
        what = f"{p.threshold} x [{_filter_text(p.match)}] within {format_duration_ms(p.within)}"
    elif p.type == "sequence":
        steps = " -> ".join(f"[{_filter_text(s)}]" for s in p.steps)
        what = f"{steps} within {format_duration_ms(p.within)}"
    elif p.type == "absence":
        what = (
            f"[{_filter_text(p.start)}] then no [{_filter_text(p.missing)}] "
            f"for {format_duration_ms(p.within)}"
        )
    else:
        unless = f" unless [{_filter_text(p.unless)}]" if p.unless else ""
        what = f"[{_filter_text(p.start)}] then {format_duration_ms(p.gap)} of silence{unless}"
    cooldown = f", cooldown {format_duration_ms(rule.cooldown)}" if rule.cooldown else ""
    destinations = ", ".join(rule.action.destinations)
    return f"{rule.id}: {p.type}: {what}{cooldown} -> {rule.action.name} [{destinations}]"


def run(args) -> int:
    try:
        rules = load_rules(args.rules)
    except RuleFileError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        print(f"{args.rules}: {len(error.problems)} problem(s); no rule is usable", file=sys.stderr)
        return 2
    for rule in rules:
        print(summarize(rule))
    print(f"{args.rules}: {len(rules)} rule(s) valid")
    return 0
