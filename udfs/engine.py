"""The rule engine: compiled rules plus one small state object per user.

Hosts (the Flink operator, the backtest, the tests) call three entry points:

* `accept(state, event)`: an on-time event arrived (lateness is the host's: udfs/host.py). It is
  buffered, since a user's events are matched in `(ts, event_id)` order, not arrival order.
* `advance(state, watermark)`: event time advanced to `watermark`. Every buffered event with
  ts < watermark is matched in order, each deadline at or before an event's ts firing first, then
  every deadline <= watermark fires. Returns the fires.
* `wakeup(state)`: the earliest watermark at which `advance` has work (a timer for the host).

Campaign layer: a rule with an `experiment` runs only for the users in its rollout (`user_id`
given to `advance`; udfs/campaign/assign.py), and a rule with a `goal` opens an outcome at each
fire that the user's later events convert or event time expires (udfs/campaign/goals.py):
`advance` returns those GoalResults among the fires, in event-time order.

A watermark W means no event with ts < W will be accepted, so events at W may still come: they wait
for the next advance. `float('inf')` ends a bounded input and flushes everything.

Activity events (exact, and cheaper): with a silence rule in the set, an event whose type no rule's
filters can match ("activity") still matters, but only its timestamp, and only to move an armed
silence deadline later. So such events are kept per bucket of `activity_bucket_ms` (the smallest
silence gap) as the earliest and the latest only: any deadline set before the bucket's earliest
event is moved by it past the bucket's end, so events between the two change nothing. Activity
needs no timer of its own: it is matched by whichever advance comes next (a deadline, a buffered
event, or the bucket's end, when it is dropped); it never makes a deadline earlier.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Iterable
from operator import itemgetter

from schemas.rules import Rule
from udfs.campaign.assign import Rollout
from udfs.campaign.goals import GoalResult, Goals
from udfs.model import EngineEvent, Fire
from udfs.patterns import PatternRule, RuleState, compile_pattern

END_OF_TIME = float("inf")
UNCHANGED, CHANGED, NEW_BUCKET = 0, 1, 2  # Engine.add_activity


class UserState:
    """Everything the engine keeps for one user; empty (and droppable) when nothing is pending.

    A host keeps its own bookkeeping beside it (udfs/host.py:HostState).
    """

    __slots__ = ("pending", "rules", "activity", "outcomes", "version")

    def __init__(self) -> None:
        # Buffered events some rule's filters can match, kept sorted by (ts, event_id).
        self.pending: list[EngineEvent] = []
        self.rules: dict[str, RuleState] = {}
        # Activity bucket -> [earliest, latest] not yet matched (earliest None once matched).
        self.activity: dict[int, list] = {}
        # Open outcomes of rules with a goal: (expires, rule_id, trigger_ts).
        self.outcomes: list[tuple[int, str, int]] = []
        # Live rules: the version of the rules history this user was last advanced under (None:
        # not yet, or no history; udfs/rules_history.py). Not part of `is_empty`: an empty state
        # is the same under every version.
        self.version: str | None = None

    def __getstate__(self) -> tuple:
        # Buffered events as plain tuples: a hot user buffers hundreds within the out-of-order
        # bound, and the state is pickled on every access; a NamedTuple pickles through
        # __reduce_ex__ and a Python-level __new__ per event, about 2x the cost of the rest.
        pending = events_as_tuples(self.pending)
        if self.version is None:
            return (pending, self.rules, self.activity, self.outcomes)
        return (pending, self.rules, self.activity, self.outcomes, self.version)

    def __setstate__(self, state: tuple) -> None:
        # State saved before goals existed has no outcomes: restore it as none open; state saved
        # without a rules history has no version; state saved before plain tuples holds
        # EngineEvents already (tuple.__new__ takes either).
        (pending, self.rules, self.activity, *rest) = state
        self.pending = events_from_tuples(pending)
        self.outcomes = rest[0] if rest else []
        self.version = rest[1] if len(rest) > 1 else None

    def is_empty(self) -> bool:
        return not (self.pending or self.rules or self.activity or self.outcomes)

    def __repr__(self) -> str:
        return (
            f"UserState(pending={self.pending!r}, rules={self.rules!r}, "
            f"activity={self.activity!r}, outcomes={self.outcomes!r}"
            + (")" if self.version is None else f", version={self.version!r})")
        )


_order = itemgetter(0, 1)  # (ts, event_id): the order a user's events are matched in
_event_new = tuple.__new__  # EngineEvent from a plain tuple, at C speed (no field checks)


def buffer_event(pending: list[EngineEvent], event: EngineEvent) -> None:
    """Keep `event` in a user's buffer (UserState.pending), in matching order."""
    insort(pending, event, key=_order)


def events_as_tuples(events: list[EngineEvent]) -> list[tuple]:
    """Events in the form they are pickled in: plain tuples (see UserState.__getstate__)."""
    return [tuple(event) for event in events]


def events_from_tuples(items: list[tuple]) -> list[EngineEvent]:
    """The inverse of events_as_tuples (EngineEvents, as older state holds, pass unchanged)."""
    return [_event_new(EngineEvent, item) for item in items]


class Engine:
    def __init__(self, rules: Iterable[Rule]):
        self.rules: list[Rule] = list(rules)
        self.patterns: list[PatternRule] = [compile_pattern(rule) for rule in self.rules]
        self.by_id = {rule.id: rule for rule in self.rules}
        self.limits = getattr(rules, "limits", None)
        self.rollout = Rollout(self.rules)
        self.goals = Goals(self.rules)
        self._deadline_patterns = [p for p in self.patterns if p.has_deadline]
        self._known = {p.state_key for p in self.patterns}
        # Activity (see the module doc): only with a silence rule, and only when every rule's
        # filters name their event types.
        gaps = [p.gap_ms for p in self.patterns if p.reads_every_event]
        filtered: set[str] | None = set()
        for types in [p.filter_types() for p in self.patterns] + [self.goals.event_types()]:
            if types is None:
                filtered = None
                break
            filtered |= types
        self.filtered_types: frozenset[str] | None = (
            frozenset(filtered) if gaps and filtered is not None else None
        )
        self.activity_bucket_ms: int | None = min(gaps) if self.filtered_types else None

    def is_activity(self, event_type: str) -> bool:
        """True for an event only a silence rule's "every event" clause reads."""
        return self.filtered_types is not None and event_type not in self.filtered_types

    def accept(self, state: UserState, event: EngineEvent) -> bool:
        """Keep an on-time event; whether the state changed (an activity event between the
        earliest and the latest of its bucket changes nothing), so a host can skip a write."""
        if self.filtered_types is None or event.event_type in self.filtered_types:
            buffer_event(state.pending, event)
            return True
        return self.add_activity(state.activity, event) != UNCHANGED

    def add_activity(self, activity: dict[int, list], event: EngineEvent) -> int:
        """Keep an on-time activity event in `activity` (UserState.activity, which a host may
        store apart): UNCHANGED, CHANGED, or NEW_BUCKET (its end is a wakeup to register)."""
        bucket = event.ts // self.activity_bucket_ms
        kept = activity.get(bucket)
        if kept is None:
            activity[bucket] = [event, event]
            return NEW_BUCKET
        first, last = kept
        if first is not None and _order(event) < _order(first):
            kept[0] = event
            return CHANGED
        if _order(event) > _order(last):
            kept[1] = event
            return CHANGED
        return UNCHANGED

    def bucket_end(self, ts: int) -> int:
        """The wakeup of the activity bucket holding `ts` (its events are dropped then)."""
        return (ts // self.activity_bucket_ms + 1) * self.activity_bucket_ms

    def rule_at(self, rule_id: str, trigger_ts: int) -> tuple[Rule, str | None]:
        """The rule a fire at `trigger_ts` belongs to, and its rules version (None: no history;
        udfs/rules_history.py answers per version)."""
        return self.by_id[rule_id], None

    def advance(
        self,
        state: UserState,
        watermark: float,
        user_id: str | None = None,
        deadline_limit: float | None = None,
    ) -> list[Fire | GoalResult]:
        """`deadline_limit` (default: the watermark) is the last deadline to fire; a rules switch
        at T advances the old version with `watermark=T, deadline_limit=T - 1`: events before T
        and deadlines before T, no more."""
        if deadline_limit is None:
            deadline_limit = watermark
        fires: list[Fire | GoalResult] = []
        rules = state.rules
        if not rules.keys() <= self._known:
            # State restored from a savepoint of an older rule set: drop the state of rules that
            # are gone or whose definition changed (keyed by id and fingerprint: state_key).
            for key in [k for k in rules if k not in self._known]:
                del rules[key]
        pending = state.pending
        ready_events: list[EngineEvent] = []
        if pending:
            ready = 0
            while ready < len(pending) and pending[ready].ts < watermark:
                ready += 1
            if ready:
                state.pending = pending[ready:]
                ready_events = pending[:ready]
        if state.activity:
            activity = self._ready_activity(state.activity, watermark)
            if activity:
                ready_events = sorted(ready_events + activity, key=_order)
        patterns = self.patterns
        if self.rollout.partial:
            patterns = [p for p in patterns if self.rollout.runs(p.rule_id, user_id)]
        goals = self.goals
        if goals or state.outcomes:
            return self._advance_goals(state, watermark, ready_events, patterns, deadline_limit)
        for event in ready_events:
            self._fire_deadlines(rules, event.ts, fires)
            for pattern in patterns:
                fire = pattern.on_event(rules, event)
                if fire is not None:
                    fires.append(fire)
        self._fire_deadlines(rules, deadline_limit, fires)
        self._prune(rules, watermark)
        return fires

    def _advance_goals(self, state, watermark, ready_events, patterns, deadline_limit) -> list:
        """`advance` with goals: per event, deadlines fire, then the event converts outcomes
        opened before it, then it is matched (so it never converts its own fire's outcome)."""
        fires: list = []
        rules, goals, outcomes, opened = state.rules, self.goals, state.outcomes, set()
        for event in ready_events:
            start = len(fires)
            self._fire_deadlines(rules, event.ts, fires)
            goals.open(outcomes, fires, start, opened)
            if outcomes:
                goals.on_event(outcomes, event, fires)
            start = len(fires)
            for pattern in patterns:
                fire = pattern.on_event(rules, event)
                if fire is not None:
                    fires.append(fire)
            goals.open(outcomes, fires, start, opened)
        start = len(fires)
        self._fire_deadlines(rules, deadline_limit, fires)
        goals.open(outcomes, fires, start, opened)
        if outcomes:
            goals.expire(outcomes, deadline_limit, fires)
        self._prune(rules, watermark)
        return fires

    def _prune(self, rules: dict[str, RuleState], watermark: float) -> None:
        for pattern in self.patterns:
            rule_state = rules.get(pattern.state_key)
            if rule_state is not None:
                pattern.prune(rule_state, watermark)
                if rule_state.is_empty():
                    del rules[pattern.state_key]

    @staticmethod
    def _ready_activity(activity: dict[int, list], watermark: float) -> list[EngineEvent]:
        ready = []
        for bucket in list(activity):
            kept = activity[bucket]
            first, last = kept
            if first is not None and first.ts < watermark:
                ready.append(first)
                kept[0] = None
            if last.ts < watermark:
                if first is None or _order(last) != _order(first):
                    ready.append(last)
                del activity[bucket]
        return ready

    def _fire_deadlines(self, rules: dict[str, RuleState], limit: float, fires: list[Fire]) -> None:
        due = []
        for index, pattern in enumerate(self._deadline_patterns):
            rule_state = rules.get(pattern.state_key)
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

    def wakeup(self, state: UserState, activity_delay: int = 0) -> int | None:
        """The earliest watermark at which `advance` has work: `due`, or the end of the earliest
        activity bucket (its events are dropped then) plus `activity_delay`.

        A host may drop a bucket later than its end (`activity_delay` >= 0): `advance` matches
        activity in time order with the buffered events and deadlines whenever it runs, so when
        a bucket is dropped changes no match, only how long it is kept."""
        due = self.due(state)
        if state.activity:
            end = (min(state.activity) + 1) * self.activity_bucket_ms + activity_delay
            return end if due is None or end < due else due
        return due

    def due(self, state: UserState) -> int | None:
        """The earliest watermark at which `advance` may fire or must match a buffered event:
        what a host forces event time to when its input goes idle. Activity alone is never due
        (it can only move a deadline later, and that deadline is due by itself)."""
        times = []
        if state.pending:
            # An event at ts is matched once the watermark passes it (W > ts).
            times.append(state.pending[0].ts + 1)
        for pattern in self.patterns:
            rule_state = state.rules.get(pattern.state_key)
            if rule_state is not None:
                t = pattern.wakeup(rule_state)
                if t is not None:
                    times.append(t)
        if state.outcomes:
            times.append(Goals.wakeup(state.outcomes))
        return min(times) if times else None

    def silence_start_types(self) -> frozenset[str] | None:
        """Event types that may start a silence rule (None: any type may). Before a user's
        earliest start no silence is armed, so activity before it changes nothing."""
        types: set[str] = set()
        for pattern in self.patterns:
            if pattern.reads_every_event:
                starts = pattern.start_types()
                if starts is None:
                    return None
                types |= starts
        return frozenset(types)

    def event_types_read(self) -> frozenset[str] | None:
        """Event types any rule reads (for filtering upstream), None if some rule reads any type.

        Silence rules read every event of an armed user but need only its timestamp; hosts that
        filter upstream must still pass (or summarise) other events for users with silence rules.
        """
        return union_of_types([p.event_types() for p in self.patterns] + [self.goals.event_types()])


def union_of_types(named: list[frozenset[str] | None]) -> frozenset[str] | None:
    """The union of event-type sets, None if one of them is None (reads any type)."""
    if any(types is None for types in named):
        return None
    return frozenset().union(*named)
