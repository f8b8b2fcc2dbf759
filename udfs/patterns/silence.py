"""`silence`: a `start` arms; an `unless` disarms (and wins over `start`); while armed every event
of the user, of any type, moves the deadline to ts + gap; reaching it fires with trigger_ts =
deadline. The action names the latest `start` event.
"""

from __future__ import annotations

from udfs.filters import compile_filter, event_types_of
from udfs.model import EngineEvent, Fire
from udfs.patterns.base import PatternRule, RuleState


class SilencePattern(PatternRule):
    has_deadline = True
    reads_every_event = True

    def __init__(self, rule):
        super().__init__(rule)
        pattern = rule.pattern
        self.is_start = compile_filter(pattern.start)
        self.is_unless = compile_filter(pattern.unless) if pattern.unless else None
        self.gap_ms = pattern.gap

    def event_types(self):
        return None

    def filter_types(self):
        start = event_types_of(self.rule.pattern.start)
        unless = event_types_of(self.rule.pattern.unless) if self.rule.pattern.unless else set()
        return None if start is None or unless is None else frozenset(start | unless)

    def start_types(self):
        return event_types_of(self.rule.pattern.start)

    def on_event(self, rules: dict[str, RuleState], event: EngineEvent) -> Fire | None:
        state = rules.get(self.state_key)
        if self.is_unless is not None and self.is_unless(event):
            if state is not None and state.deadline is not None:
                state.deadline = state.start_id = state.start_properties = None
                self._store(rules, state)
            return None
        if self.is_start(event):
            if state is None:
                state = rules[self.state_key] = RuleState()
            state.start_id = event.event_id
            state.start_properties = event.properties
            state.deadline = event.ts + self.gap_ms
        elif state is not None and state.deadline is not None:
            state.deadline = event.ts + self.gap_ms
        return None
