"""`count`: fire on the event making `threshold` matches with last.ts - first.ts < within."""

from __future__ import annotations

from udfs.filters import compile_filter, event_types_of
from udfs.model import EngineEvent, Fire
from udfs.patterns.base import PatternRule, RuleState


class CountPattern(PatternRule):
    def __init__(self, rule):
        super().__init__(rule)
        pattern = rule.pattern
        self.matches = compile_filter(pattern.match)
        self.threshold = pattern.threshold
        self.window_ms = pattern.within

    def event_types(self):
        return event_types_of(self.rule.pattern.match)

    def on_event(self, rules: dict[str, RuleState], event: EngineEvent) -> Fire | None:
        if not self.matches(event):
            return None
        state = rules.get(self.state_key) or RuleState()
        items = state.items
        # Unconsumed matches too old to share a window with this event can never count again.
        horizon = event.ts - self.window_ms
        drop = 0
        while drop < len(items) and items[drop][0] <= horizon:
            drop += 1
        if drop:
            del items[:drop]
        items.append((event.ts, event.event_id, None))
        fire = None
        if len(items) >= self.threshold:
            fire = self._emit(
                state,
                Fire(self.rule_id, event.ts, tuple(i[1] for i in items), event.properties),
            )
            items.clear()
        self._store(rules, state)
        return fire
