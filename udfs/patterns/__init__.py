"""One module per pattern type; `compile_pattern` picks the class for a validated rule."""

from __future__ import annotations

from schemas.rules import Rule
from udfs.patterns.absence import AbsencePattern
from udfs.patterns.base import PatternRule, RuleState
from udfs.patterns.count import CountPattern
from udfs.patterns.sequence import SequencePattern
from udfs.patterns.silence import SilencePattern

_BY_TYPE: dict[str, type[PatternRule]] = {
    "count": CountPattern,
    "sequence": SequencePattern,
    "absence": AbsencePattern,
    "silence": SilencePattern,
}


def compile_pattern(rule: Rule) -> PatternRule:
    return _BY_TYPE[rule.pattern.type](rule)


__all__ = ["PatternRule", "RuleState", "compile_pattern"]
