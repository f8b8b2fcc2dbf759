"""Replaying events in arrival order through the engine, as the backtest (and tests) do.

`engine` is an Engine, or a RulesHistory (live rules: versions switched at their event time,
udfs/rules_history.py) whose actions and outcomes carry `rules_version`.
The host policy is udfs/host.py's, over timers in memory whose watermark is `max_ts_seen - bound`,
moved after every event; `finish()` moves event time to +infinity, as Flink's final watermark
does, so armed deadlines fire at their own trigger_ts.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from schemas.action import Action
from schemas.event import Event
from schemas.outcome import Outcome
from udfs.actions import build_action
from udfs.campaign.step import ACTION, OUTCOME, SUPPRESSED, CampaignState, CampaignStep
from udfs.engine import END_OF_TIME, Engine
from udfs.host import Host, HostState, MemoryState, MemoryTimerService, ReplayWatermark
from udfs.model import EngineEvent, Fire
from udfs.rules_history import HistoryCampaignStep, RulesHistory


@dataclass
class ReplayCounts:
    read: int = 0
    processed: int = 0
    late: int = 0
    invalid: int = 0
    actions_per_rule: dict[str, int] = field(default_factory=dict)
    # Campaign layer: detections by fate (sent, deferred, or the suppression reason), outcomes.
    fates: Counter = field(default_factory=Counter)
    outcomes: int = 0
    converted: int = 0


class Replay:
    def __init__(
        self,
        engine: Engine | RulesHistory,
        max_out_of_orderness_ms: int = 2_000,
        on_action: Callable[[Action], None] | None = None,
        on_late: Callable[[Event], None] | None = None,
        activity_delay: Callable[[str], int] | None = None,
        *,
        on_suppressed: Callable[[Action], None] | None = None,
        on_outcome: Callable[[Outcome], None] | None = None,
        enrich: Callable[[Action], Action] | None = None,
    ):
        """`activity_delay`: None (the reference) wakes a user at ts + 1 for every event; given,
        activity (Engine.is_activity) is kept apart and wakes the user only at its bucket's end
        plus `activity_delay(user_id)`, as the Flink operator does (udfs/host.py).
        `enrich`: the CRM lookup of each action before its fate (e.g. a profiles snapshot)."""
        self.engine = engine
        self.on_action = on_action or (lambda action: None)
        self.on_late = on_late or (lambda event: None)
        self.on_suppressed = on_suppressed or (lambda action: None)
        self.on_outcome = on_outcome or (lambda outcome: None)
        self.enrich = enrich
        self.campaign = (
            HistoryCampaignStep(engine)
            if isinstance(engine, RulesHistory)
            else CampaignStep(engine)
        )
        self.campaign_states: dict[str, CampaignState] = {}
        self._campaign_due: list[tuple[int, str]] = []  # (wakeup, user): a heap
        self.timers = MemoryTimerService(watermark=-END_OF_TIME, replace=activity_delay is None)
        self._states = MemoryState(self.timers)
        self.activity = MemoryState(self.timers)
        self.host = Host(
            engine,
            self._states,
            self.activity,
            activity_delay=activity_delay,
            clock=self.timers.current_processing_time,
        )
        self._watermark = ReplayWatermark(max_out_of_orderness_ms)
        self.counts = ReplayCounts(actions_per_rule={r.id: 0 for r in engine.rules})

    @property
    def watermark(self) -> float:
        return self.timers.watermark

    @property
    def max_ts(self) -> int | None:
        return self._watermark.max_ts

    @property
    def states(self) -> dict[str, HostState]:
        """Each user's state, as the Flink operator stores it (activity apart: `activity`)."""
        return self._states.values

    @states.setter
    def states(self, states: dict[str, HostState]) -> None:
        self._states.values = states

    def push(self, event: Event) -> None:
        """One valid event, in arrival order."""
        counts = self.counts
        counts.read += 1
        self.timers.key = event.user_id
        if self.host.on_event(self.timers, event.user_id, EngineEvent.from_event(event)):
            counts.processed += 1
        else:
            counts.late += 1
            self.on_late(event)
        if self._watermark.observe(event.ts):
            self.advance_to(self._watermark.value)

    def count_invalid(self) -> None:
        self.counts.read += 1
        self.counts.invalid += 1

    def finish(self) -> None:
        self.advance_to(END_OF_TIME)

    def advance_to(self, watermark: float) -> None:
        if watermark <= self.timers.watermark:
            return
        timers, host = self.timers, self.host
        active = self.campaign.active
        for timestamp in timers.advance_watermark(watermark):
            fires, _detected_at = host.on_timer(timers, timestamp)
            user = timers.key
            if not active:
                for fire in fires:
                    self.on_action(self._action(user, fire))
            elif fires:
                self._campaign(user, fires, host.event_time)
        due = self._campaign_due
        while due and due[0][0] <= watermark:
            _, user = heapq.heappop(due)
            self._campaign(user, (), watermark)

    def _action(self, user: str, fire: Fire) -> Action:
        rule, version = self.engine.rule_at(fire.rule_id, fire.trigger_ts)
        max_ts = self.max_ts
        now = self.watermark if max_ts is None else min(self.watermark, max_ts)
        detected_at = int(max(fire.trigger_ts, now))
        self.counts.actions_per_rule[fire.rule_id] += 1
        action = build_action(rule, user, fire, detected_at)
        if version is not None:
            action.rules_version = version
        return action if self.enrich is None else self.enrich(action)

    def _campaign(self, user: str, fires, event_time: float) -> None:
        """Fires and goal results of `user` through the campaign step; outputs dispatched."""
        step = self.campaign
        state = self.campaign_states.get(user)
        if state is None:
            state = self.campaign_states[user] = CampaignState()
        out = []
        for item in fires:
            if type(item) is Fire:
                out += step.submit(state, self._action(user, item))
            else:
                out += step.on_goal(state, user, item)
        out += step.release(state, user, event_time)
        for kind, record in out:
            self._dispatch(kind, record)
        wakeup = step.wakeup(state)
        if wakeup is not None:
            heapq.heappush(self._campaign_due, (wakeup, user))
        elif step.is_empty(state):
            del self.campaign_states[user]

    def _dispatch(self, kind: str, record) -> None:
        counts = self.counts
        if kind == ACTION:
            counts.fates["sent" if record.deliver_at is None else "deferred"] += 1
            self.on_action(record)
        elif kind == SUPPRESSED:
            counts.fates[record.suppressed] += 1
            self.on_suppressed(record)
        elif kind == OUTCOME:
            counts.outcomes += 1
            counts.converted += record.converted
            self.on_outcome(record)


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
