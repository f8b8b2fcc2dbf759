"""Goals: did a detection convert? (DESIGN.md "Outcomes").

Per user, each detection of a rule with a `goal` opens an outcome `(expires, rule_id, trigger_ts)`
in the engine's state, where `expires = trigger_ts + within`. The engine matches a user's events in
`(ts, event_id)` order, firing deadlines first, so an outcome is open exactly for the events after
its trigger's position (count/sequence: after the completing event; absence/silence: ts >=
trigger_ts). The first goal event with `ts < expires` converts it (one event may convert several
outcomes); once event time reaches `expires` it resolves unconverted.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from schemas.rules import Rule
from udfs.filters import compile_filter, event_types_of
from udfs.model import EngineEvent, Fire


class GoalResult(NamedTuple):
    """A resolved outcome: converted iff `goal_ts` is not None."""

    rule_id: str
    trigger_ts: int
    goal_ts: int | None
    goal_event_id: str | None


class Goals:
    """The goals of a rule set, compiled; `outcomes` arguments are a user's open outcomes
    (UserState.outcomes), a list of `(expires, rule_id, trigger_ts)`."""

    def __init__(self, rules: Iterable[Rule]):
        self.by_rule = {
            rule.id: (compile_filter(rule.goal.filter()), rule.goal.within)
            for rule in rules
            if rule.goal is not None
        }
        self.filters = [rule.goal.filter() for rule in rules if rule.goal is not None]

    def __bool__(self) -> bool:
        return bool(self.by_rule)

    def event_types(self) -> frozenset[str] | None:
        """Event types a goal can match (None: any); the JVM filters must pass them."""
        types: set[str] = set()
        for spec in self.filters:
            matched = event_types_of(spec)
            if matched is None:
                return None
            types |= matched
        return frozenset(types)

    def open(self, outcomes: list, fires: list, start: int, opened: set) -> None:
        """Open an outcome for each Fire in `fires[start:]` of a rule with a goal. A second fire
        of a rule at the same trigger_ts is the same action (same action_id) and opens none:
        `opened` holds the (rule_id, trigger_ts) opened in this advance (a rule's fires at one
        trigger_ts all come in one advance: its events at that ts are matched together)."""
        by_rule = self.by_rule
        for fire in fires[start:]:
            if type(fire) is Fire:
                goal = by_rule.get(fire.rule_id)
                if goal is not None and (fire.rule_id, fire.trigger_ts) not in opened:
                    opened.add((fire.rule_id, fire.trigger_ts))
                    outcomes.append((fire.trigger_ts + goal[1], fire.rule_id, fire.trigger_ts))

    def goal_of(self, rule_id: str, trigger_ts: int):
        """The (filter, within) of the goal an outcome of `rule_id` at `trigger_ts` resolves by
        (None: the rule is gone)."""
        return self.by_rule.get(rule_id)

    def on_event(self, outcomes: list, event: EngineEvent, out: list) -> None:
        """The event converts every open outcome whose goal it matches within the window."""
        keep = []
        for outcome in outcomes:
            expires, rule_id, trigger_ts = outcome
            goal = self.goal_of(rule_id, trigger_ts)
            if goal is not None and event.ts < expires and goal[0](event):
                out.append(GoalResult(rule_id, trigger_ts, event.ts, event.event_id))
            else:
                keep.append(outcome)
        if len(keep) != len(outcomes):
            outcomes[:] = keep

    def expire(self, outcomes: list, watermark: float, out: list) -> None:
        """Resolve unconverted every outcome whose window event time has reached; an outcome of
        a rule no longer in the set (state from an older rule set) is dropped."""
        keep = []
        for outcome in outcomes:
            expires, rule_id, trigger_ts = outcome
            if self.goal_of(rule_id, trigger_ts) is None:
                continue
            if expires <= watermark:
                out.append(GoalResult(rule_id, trigger_ts, None, None))
            else:
                keep.append(outcome)
        if len(keep) != len(outcomes):
            outcomes[:] = keep

    @staticmethod
    def wakeup(outcomes: list) -> int | None:
        return min(outcome[0] for outcome in outcomes) if outcomes else None
