"""`sequence`: steps in order, first to last within `within`; fires on the last step.

Other events may come between steps. Of all the ways to complete the sequence with the current
event, the one with the earliest start is used, each middle step taking its earliest event after
the previous step; the events used are consumed.
"""

from __future__ import annotations

from udfs.filters import compile_filter, event_types_of
from udfs.model import EngineEvent, Fire
from udfs.patterns.base import PatternRule, RuleState


class SequencePattern(PatternRule):
    def __init__(self, rule):
        super().__init__(rule)
        pattern = rule.pattern
        self.steps = [compile_filter(step) for step in pattern.steps]
        self.window_ms = pattern.within
        self.last_step = len(self.steps) - 1
        # Bit i of an item's mask: the event matches step i (only steps before the last are kept).
        self.keep_mask = (1 << self.last_step) - 1

    def event_types(self):
        types: set[str] = set()
        for step in self.rule.pattern.steps:
            step_types = event_types_of(step)
            if step_types is None:
                return None
            types |= step_types
        return frozenset(types)

    def on_event(self, rules: dict[str, RuleState], event: EngineEvent) -> Fire | None:
        mask = 0
        for index, step in enumerate(self.steps):
            if step(event):
                mask |= 1 << index
        if not mask:
            return None
        state = rules.get(self.state_key)
        if state is None:
            if not mask & self.keep_mask and self.last_step > 0:
                return None  # a last step with nothing before it to complete
            state = RuleState()
        items = state.items
        horizon = event.ts - self.window_ms
        drop = 0
        while drop < len(items) and items[drop][0] <= horizon:
            drop += 1
        if drop:
            del items[:drop]
        fire = None
        if mask >> self.last_step & 1:
            chain = self._earliest_chain(items)
            if chain is not None:
                event_ids = tuple(items[i][1] for i in chain) + (event.event_id,)
                for i in reversed(chain):
                    del items[i]
                fire = self._emit(state, Fire(self.rule_id, event.ts, event_ids, event.properties))
                self._store(rules, state)
                return fire
        if mask & self.keep_mask:
            items.append((event.ts, event.event_id, mask & self.keep_mask))
        self._store(rules, state)
        return fire

    def _earliest_chain(self, items: list) -> list[int] | None:
        """Indexes of the kept events for steps 0..last-1, earliest start first; None if none."""
        if self.last_step == 0:
            return []
        for start, item in enumerate(items):
            if not item[2] & 1:
                continue
            chain = [start]
            position = start + 1
            for step in range(1, self.last_step):
                bit = 1 << step
                while position < len(items) and not items[position][2] & bit:
                    position += 1
                if position == len(items):
                    # A later start can only find its steps later still: no chain at all.
                    return None
                chain.append(position)
                position += 1
            return chain
        return None
