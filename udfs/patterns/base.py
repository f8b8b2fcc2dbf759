"""What every pattern shares: its per-(rule, user) state, cooldown, and the hooks the engine calls.

A pattern sees one user's events one at a time, in `(ts, event_id)` order, and never an event whose
time is before a deadline it still holds (the engine fires deadlines first).
"""

from __future__ import annotations

import hashlib
from typing import Any

from schemas.rules import Rule
from udfs.model import EngineEvent, Fire


class RuleState:
    """State of one rule for one user. Plain slots so it pickles small into Flink keyed state.

    items: events kept for a count or sequence, oldest first, as (ts, event_id, extra).
    deadline / start_id / start_properties: an armed absence or silence.
    cooldown_until: no fire with trigger_ts below this.
    """

    __slots__ = ("items", "deadline", "start_id", "start_properties", "cooldown_until")

    def __init__(self) -> None:
        self.items: list[tuple[int, str, Any]] = []
        self.deadline: int | None = None
        self.start_id: str | None = None
        self.start_properties: dict[str, Any] | None = None
        self.cooldown_until: int | None = None

    def __getstate__(self) -> tuple:
        return (
            self.items,
            self.deadline,
            self.start_id,
            self.start_properties,
            self.cooldown_until,
        )

    def __setstate__(self, state: tuple) -> None:
        (self.items, self.deadline, self.start_id, self.start_properties, self.cooldown_until) = (
            state
        )

    def is_empty(self) -> bool:
        return not self.items and self.deadline is None and self.cooldown_until is None

    def __repr__(self) -> str:
        return (
            f"RuleState(items={self.items!r}, deadline={self.deadline!r}, "
            f"start_id={self.start_id!r}, cooldown_until={self.cooldown_until!r})"
        )


def state_key(rule: Rule) -> str:
    """The key of a rule's state in `UserState.rules`: its id and a fingerprint of what its
    state depends on (pattern and cooldown; not the action, applied when it fires). State saved
    under an edited definition is not found, so an edited rule starts clean after a restore."""
    definition = rule.model_dump_json(include={"pattern", "cooldown"}, exclude_none=True)
    return f"{rule.id}#{hashlib.sha256(definition.encode()).hexdigest()[:8]}"


class PatternRule:
    """A compiled rule: subclasses implement `on_event`; deadline patterns use `fire_deadline`."""

    has_deadline = False
    #: True when the pattern may need events of any type (silence: every event moves the deadline).
    reads_every_event = False

    def __init__(self, rule: Rule):
        self.rule = rule
        self.rule_id = rule.id
        self.state_key = state_key(rule)
        self.cooldown_ms = rule.cooldown
        self.window_ms = 0

    def event_types(self) -> frozenset[str] | None:
        """Event types this rule reads, or None for any type."""
        raise NotImplementedError

    def filter_types(self) -> frozenset[str] | None:
        """Event types its filters can match (None: any). Differs from `event_types` only for
        silence, which also reads every other event, but only for its timestamp."""
        return self.event_types()

    def on_event(self, rules: dict[str, RuleState], event: EngineEvent) -> Fire | None:
        raise NotImplementedError

    def fire_deadline(self, rules: dict[str, RuleState]) -> Fire | None:
        """Fire the armed deadline (event time has reached it) and disarm."""
        state = rules[self.state_key]
        fire = self._emit(
            state,
            Fire(self.rule_id, state.deadline, (state.start_id,), state.start_properties or {}),
        )
        state.deadline = state.start_id = state.start_properties = None
        self._store(rules, state)
        return fire

    def prune(self, state: RuleState, watermark: float) -> None:
        """Forget what no event at or after `watermark` can use. Events order by time, so every
        later event has ts >= watermark."""
        if state.items:
            horizon = watermark - self.window_ms
            items = state.items
            drop = 0
            while drop < len(items) and items[drop][0] <= horizon:
                drop += 1
            if drop:
                del items[:drop]
        if state.cooldown_until is not None and state.cooldown_until <= watermark:
            state.cooldown_until = None

    def wakeup(self, state: RuleState) -> int | None:
        """The earliest event time at which this state needs the engine (deadline or clean-up)."""
        times = []
        if state.deadline is not None:
            times.append(state.deadline)
        if state.items:
            times.append(state.items[0][0] + self.window_ms)
        if state.cooldown_until is not None:
            times.append(state.cooldown_until)
        return min(times) if times else None

    def _emit(self, state: RuleState, fire: Fire) -> Fire | None:
        """Apply cooldown: a suppressed match is used up by the caller but emits nothing and does
        not restart the cooldown."""
        if state.cooldown_until is not None and fire.trigger_ts < state.cooldown_until:
            return None
        if self.cooldown_ms:
            state.cooldown_until = fire.trigger_ts + self.cooldown_ms
        return fire

    def _store(self, rules: dict[str, RuleState], state: RuleState) -> None:
        if state.is_empty():
            rules.pop(self.state_key, None)
        else:
            rules[self.state_key] = state
