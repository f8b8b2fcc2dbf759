"""`absence`: each `start` arms (or re-arms) `start.ts + within`; a `missing` event before the
deadline disarms; reaching the deadline fires with trigger_ts = deadline.

An event matching both `missing` and `start` disarms and does not arm (as `unless` wins over
`start` for silence).
"""

from __future__ import annotations

from udfs.filters import compile_filter, event_types_of
from udfs.model import EngineEvent, Fire
from udfs.patterns.base import PatternRule, RuleState


class AbsencePattern(PatternRule):
    has_deadline = True

    def __init__(self, rule):
        super().__init__(rule)
        pattern = rule.pattern
        self.is_start = compile_filter(pattern.start)
        self.is_missing = compile_filter(pattern.missing)
        self.within_ms = pattern.within

    def event_types(self):
        start = event_types_of(self.rule.pattern.start)
        missing = event_types_of(self.rule.pattern.missing)
        return None if start is None or missing is None else start | missing

    def on_event(self, rules: dict[str, RuleState], event: EngineEvent) -> Fire | None:
        if self.is_missing(event):
            state = rules.get(self.state_key)
            if state is not None and state.deadline is not None:
                state.deadline = state.start_id = state.start_properties = None
                self._store(rules, state)
            return None
        if self.is_start(event):
            state = rules.get(self.state_key) or RuleState()
            state.deadline = event.ts + self.within_ms
            state.start_id = event.event_id
            state.start_properties = event.properties
            rules[self.state_key] = state
        return None
