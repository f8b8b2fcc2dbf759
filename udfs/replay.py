"""Replaying events in arrival order through the engine, as the backtest (and tests) do.

The watermark is `max_ts_seen - bound`, advanced after every event; an event with ts below the
watermark when it arrives is late. `finish()` moves event time to +infinity, as Flink's final
watermark does, so armed deadlines fire at their own trigger_ts.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from schemas.action import Action
from schemas.event import Event
from udfs.actions import build_action
from udfs.engine import END_OF_TIME, Engine, UserState
from udfs.model import EngineEvent


@dataclass
class ReplayCounts:
    read: int = 0
    processed: int = 0
    late: int = 0
    invalid: int = 0
    actions_per_rule: dict[str, int] = field(default_factory=dict)


class Replay:
    def __init__(
        self,
        engine: Engine,
        max_out_of_orderness_ms: int = 2_000,
        on_action: Callable[[Action], None] | None = None,
        on_late: Callable[[Event], None] | None = None,
        activity_delay: Callable[[str], int] | None = None,
    ):
        """`activity_delay`: None (the reference) wakes a user at ts + 1 for every event; given,
        an activity event (Engine.is_activity) wakes the user only at its bucket's end plus
        `activity_delay(user_id)`, as the Flink operator does (jobs/operators.py, tests)."""
        self.engine = engine
        self.activity_delay = activity_delay
        self.bound_ms = max_out_of_orderness_ms
        self.on_action = on_action or (lambda action: None)
        self.on_late = on_late or (lambda event: None)
        self.watermark: float = -END_OF_TIME
        self.max_ts: int | None = None
        self.states: dict[str, UserState] = {}
        self._timers: list[tuple[float, str]] = []
        self._timer_of: dict[str, float] = {}
        self.counts = ReplayCounts(actions_per_rule={r.id: 0 for r in engine.rules})

    def push(self, event: Event) -> None:
        """One valid event, in arrival order."""
        counts = self.counts
        counts.read += 1
        if event.ts < self.watermark:
            counts.late += 1
            self.on_late(event)
        else:
            counts.processed += 1
            user = event.user_id
            state = self.states.get(user)
            if state is None:
                state = self.states[user] = UserState()
            self.engine.accept(state, EngineEvent.from_event(event), self.watermark)
            if self.activity_delay is not None and self.engine.is_activity(event.event_type):
                self._schedule(user, self.engine.bucket_end(event.ts) + self.activity_delay(user))
            else:
                self._schedule(user, event.ts + 1)
        if self.max_ts is None or event.ts > self.max_ts:
            self.max_ts = event.ts
            self.advance_to(self.max_ts - self.bound_ms)

    def count_invalid(self) -> None:
        self.counts.read += 1
        self.counts.invalid += 1

    def finish(self) -> None:
        self.advance_to(END_OF_TIME)

    def advance_to(self, watermark: float) -> None:
        if watermark <= self.watermark:
            return
        self.watermark = watermark
        timers, timer_of, engine = self._timers, self._timer_of, self.engine
        while timers and timers[0][0] <= watermark:
            when, user = heapq.heappop(timers)
            if timer_of.get(user) != when:
                continue  # superseded by an earlier timer for the same user
            del timer_of[user]
            state = self.states[user]
            for fire in engine.advance(state, watermark):
                self._emit(user, fire)
            if state.is_empty():
                del self.states[user]
            else:
                delay = self.activity_delay(user) if self.activity_delay is not None else 0
                next_time = engine.wakeup(state, delay)
                if next_time is not None:
                    self._schedule(user, next_time)

    def _schedule(self, user: str, when: float) -> None:
        current = self._timer_of.get(user)
        if current is None or when < current:
            self._timer_of[user] = when
            heapq.heappush(self._timers, (when, user))

    def _emit(self, user: str, fire) -> None:
        rule = self.engine.by_id[fire.rule_id]
        now = self.watermark if self.max_ts is None else min(self.watermark, self.max_ts)
        detected_at = int(max(fire.trigger_ts, now))
        self.counts.actions_per_rule[fire.rule_id] += 1
        self.on_action(build_action(rule, user, fire, detected_at))


def replay(
    engine: Engine,
    events: Iterable[Event],
    max_out_of_orderness_ms: int = 2_000,
    activity_delay: Callable[[str], int] | None = None,
) -> list[Action]:
    """Replay a finite sequence of events; return the actions in emission order."""
    actions: list[Action] = []
    runner = Replay(
        engine, max_out_of_orderness_ms, on_action=actions.append, activity_delay=activity_delay
    )
    for event in events:
        runner.push(event)
    runner.finish()
    return actions
