"""The rule engine: compiled rules plus one small state object per user.

Hosts (the Flink operator, the backtest, the tests) call three entry points:

* `accept(state, event, watermark)`: an event arrived. Late (ts < watermark) -> False, else it is
  buffered, since a user's events are matched in `(ts, event_id)` order, not arrival order.
* `advance(state, watermark)`: event time advanced to `watermark`. Every buffered event with
  ts < watermark is matched in order, each deadline at or before an event's ts firing first, then
  every deadline <= watermark fires. Returns the fires.
* `wakeup(state)`: the earliest watermark at which `advance` has work (a timer for the host).

A watermark W means no event with ts < W will be accepted, so events at W may still come: they wait
for the next advance. `float('inf')` ends a bounded input and flushes everything.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Iterable
from operator import itemgetter

from schemas.rules import Rule
from udfs.model import EngineEvent, Fire
from udfs.patterns import PatternRule, RuleState, compile_pattern

END_OF_TIME = float("inf")


class UserState:
    """Everything the engine keeps for one user; empty (and droppable) when nothing is pending."""

    __slots__ = ("pending", "rules")

    def __init__(self) -> None:
        # Buffered events, kept sorted by (ts, event_id).
        self.pending: list[EngineEvent] = []
        self.rules: dict[str, RuleState] = {}

    def __getstate__(self) -> tuple:
        return (self.pending, self.rules)

    def __setstate__(self, state: tuple) -> None:
        self.pending, self.rules = state

    def is_empty(self) -> bool:
        return not self.pending and not self.rules

    def __repr__(self) -> str:
        return f"UserState(pending={self.pending!r}, rules={self.rules!r})"


_order = itemgetter(0, 1)  # (ts, event_id): the order a user's events are matched in


class Engine:
    def __init__(self, rules: Iterable[Rule]):
        self.rules: list[Rule] = list(rules)
        self.patterns: list[PatternRule] = [compile_pattern(rule) for rule in self.rules]
        self.by_id = {rule.id: rule for rule in self.rules}
        self._deadline_patterns = [p for p in self.patterns if p.has_deadline]
        self._known = {p.rule_id for p in self.patterns}

    def accept(self, state: UserState, event: EngineEvent, watermark: float) -> bool:
        if event.ts < watermark:
            return False
        insort(state.pending, event, key=_order)
        return True

    def advance(self, state: UserState, watermark: float) -> list[Fire]:
        fires: list[Fire] = []
        rules = state.rules
        if not rules.keys() <= self._known:
            # State restored from a savepoint of an older rule set: drop rules that are gone.
            for rule_id in [r for r in rules if r not in self._known]:
                del rules[rule_id]
        pending = state.pending
        if pending:
            ready = 0
            while ready < len(pending) and pending[ready].ts < watermark:
                ready += 1
            if ready:
                state.pending = pending[ready:]
                patterns = self.patterns
                for event in pending[:ready]:
                    self._fire_deadlines(rules, event.ts, fires)
                    for pattern in patterns:
                        fire = pattern.on_event(rules, event)
                        if fire is not None:
                            fires.append(fire)
        self._fire_deadlines(rules, watermark, fires)
        for pattern in self.patterns:
            rule_state = rules.get(pattern.rule_id)
            if rule_state is not None:
                pattern.prune(rule_state, watermark)
                if rule_state.is_empty():
                    del rules[pattern.rule_id]
        return fires

    def _fire_deadlines(self, rules: dict[str, RuleState], limit: float, fires: list[Fire]) -> None:
        due = []
        for index, pattern in enumerate(self._deadline_patterns):
            rule_state = rules.get(pattern.rule_id)
            if rule_state is not None and rule_state.deadline is not None:
                if rule_state.deadline <= limit:
                    due.append((rule_state.deadline, index, pattern))
        if not due:
            return
        due.sort(key=lambda d: (d[0], d[1]))
        for _, _, pattern in due:
            fire = pattern.fire_deadline(rules)
            if fire is not None:
                fires.append(fire)

    def wakeup(self, state: UserState) -> int | None:
        times = []
        if state.pending:
            # An event at ts is matched once the watermark passes it (W > ts).
            times.append(state.pending[0].ts + 1)
        for pattern in self.patterns:
            rule_state = state.rules.get(pattern.rule_id)
            if rule_state is not None:
                t = pattern.wakeup(rule_state)
                if t is not None:
                    times.append(t)
        return min(times) if times else None

    def event_types_read(self) -> frozenset[str] | None:
        """Event types any rule reads (for filtering upstream), None if some rule reads any type.

        Silence rules read every event of an armed user but need only its timestamp; hosts that
        filter upstream must still pass (or summarise) other events for users with silence rules.
        """
        types: set[str] = set()
        for pattern in self.patterns:
            pattern_types = pattern.event_types()
            if pattern_types is None:
                return None
            types |= pattern_types
        return frozenset(types)
