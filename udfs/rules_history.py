"""Live rules in the engine: a history of rule-set versions, each in force from its event time T
(DESIGN.md "Live rules"), behind the Engine's own entry points so udfs/host.py hosts it as is.

One Engine per version. Each user's UserState records the version it was last advanced under
(`UserState.version`). `advance(state, W)` crosses every switch T <= W in order: the old
version's engine advances to T without the deadlines at T (events with ts < T, deadlines < T),
then the new version's engine takes over, so every event with ts >= T and every deadline >= T is
the new version's. A switch is applied lazily, at the user's next advance: it produces nothing by
itself, and a state only shrinks across it, so the old version's wakeup is never too late.

State across a switch, per user: a rule's state lives under `rule_id#fingerprint`
(udfs/patterns/base.py:state_key; the fingerprint covers pattern and cooldown), so a rule kept
with the same pattern and cooldown keeps its items, deadline and cooldown; a changed pattern or
cooldown is another key, which the new engine drops (the rule starts empty), as it drops a
removed rule's. `action`, `audience`, `experiment` and `goal` are applied per fire by the version
in force at its trigger_ts, so changing them keeps the detection state; but a kept rule's state
is dropped for a user outside the new version's rollout (such a user holds no state for it).
Open outcomes carry over: each resolves by the goal of the version in force at its trigger_ts,
even when that rule is gone (its action was emitted; its measurement completes).

Campaign layer (`HistoryCampaignStep`): the fate state (queue, counted, deferred) carries over;
each action is decided by the audience, quiet hours, caps and holdout of the version in force at
its trigger_ts. Caps count the earlier actions that passed a cap step, whatever their version (an
action decided under a version without caps was not counted).
"""

from __future__ import annotations

from bisect import bisect_right

from schemas.rules import Rule
from schemas.rules_record import ScheduledVersion
from udfs.campaign.fate import FateStep
from udfs.campaign.goals import GoalResult, Goals
from udfs.campaign.step import OUTCOME, CampaignStep
from udfs.engine import Engine, UserState
from udfs.model import Fire
from udfs.rules_scope import RulesScope


class HistoryGoals(Goals):
    """A version's goals, and through `previous` those of the versions before it: an outcome is
    resolved by the goal of the version in force at its trigger_ts."""

    def __init__(self, rules, since: float, previous: HistoryGoals | None):
        super().__init__(rules)
        self.since = since
        self.previous = previous
        self._any = bool(self.by_rule) or (previous is not None and bool(previous))

    def __bool__(self) -> bool:
        return self._any

    def goal_of(self, rule_id: str, trigger_ts: int):
        goals = self
        while trigger_ts < goals.since:
            goals = goals.previous
        return goals.by_rule.get(rule_id)


class _Rollouts:
    """What a host asks of `Engine.rollout`: whether some version's rollout is partial."""

    def __init__(self, engines: list[Engine]):
        self.partial = frozenset().union(*(engine.rollout.partial for engine in engines))


class RulesHistory:
    """The versions of an effective schedule (schemas/rules_record.py:effective_schedule), with
    the Engine's entry points (`accept`, `advance`, `wakeup`, `due`, activity) for a host."""

    def __init__(
        self,
        schedule: list[ScheduledVersion],
        activity: bool = True,
        scope: RulesScope | None = None,
    ):
        """`activity=False`: no event is activity (every one buffered and matched), for a host
        whose history grows while events arrive (udfs/live_rules.py); with a `scope`
        (udfs/rules_scope.py, which every version fits), activity is what the scope makes it."""

        if not schedule or schedule[0].since != float("-inf"):
            raise ValueError("a schedule starts with a version in force from -inf")
        self.starts: list[float] = [version.since for version in schedule]
        self.names: list[str] = [version.version for version in schedule]
        self.index = {name: i for i, name in enumerate(self.names)}
        self.engines: list[Engine] = []
        goals = None
        for version in schedule:
            engine = Engine(version.rules)
            engine.goals = goals = HistoryGoals(engine.rules, version.since, goals)
            self.engines.append(engine)
        self._share_activity(activity, scope)
        self.rollout = _Rollouts(self.engines)
        latest: dict[str, Rule] = {}
        for engine in self.engines:
            latest.update(engine.by_id)
        self.rules: list[Rule] = list(latest.values())
        self.by_id = latest

    def _share_activity(self, activity: bool, scope: RulesScope | None) -> None:
        """Activity (udfs/engine.py) is kept in each user's state across switches, so every
        version must agree on it: an event is activity when no version's filters can match it,
        in buckets of the smallest silence gap of any version; off when some version has a
        filter without an event type, or no version has a silence rule."""
        gaps: list[int] = []
        types: set[str] | None = set()
        for engine in self.engines:
            gaps += [p.gap_ms for p in engine.patterns if p.reads_every_event]
            for read in [p.filter_types() for p in engine.patterns] + [engine.goals.event_types()]:
                if read is None or types is None:
                    types = None
                    break
                types |= read
        filtered = frozenset(types) if activity and gaps and types is not None else None
        bucket = min(gaps) if filtered is not None else None
        if scope is not None and activity:
            filtered, bucket = scope.engine.filtered_types, scope.engine.activity_bucket_ms
        for engine in self.engines:
            engine.filtered_types = filtered
            engine.activity_bucket_ms = bucket
        first = self.engines[0]
        self.filtered_types = first.filtered_types
        self.activity_bucket_ms = first.activity_bucket_ms
        self.is_activity = first.is_activity
        self.accept = first.accept
        self.add_activity = first.add_activity
        self.bucket_end = first.bucket_end

    def version_index(self, ts: float) -> int:
        """The index of the version in force at event time `ts`."""
        return bisect_right(self.starts, ts) - 1

    def rule_at(self, rule_id: str, trigger_ts: int) -> tuple[Rule, str]:
        index = self.version_index(trigger_ts)
        return self.engines[index].by_id[rule_id], self.names[index]

    def _index(self, state: UserState, watermark: float) -> int:
        if state.version is not None:
            index = self.index.get(state.version)
            if index is not None:
                return index
        if state.rules or state.outcomes:
            return 0  # state saved without a history: the first version's
        # A fresh state: nothing of the user before its earliest event, so any version up to the
        # one in force then is exact; start there rather than cross every earlier switch.
        earliest = watermark
        if state.pending:
            earliest = min(earliest, state.pending[0].ts)
        for first, last in state.activity.values():
            earliest = min(earliest, last.ts if first is None else first.ts)
        return self.version_index(earliest)

    def advance(
        self, state: UserState, watermark: float, user_id: str | None = None
    ) -> list[Fire | GoalResult]:
        index = self._index(state, watermark)
        starts, engines = self.starts, self.engines
        fires: list = []
        while index + 1 < len(starts) and starts[index + 1] <= watermark:
            switch_at = starts[index + 1]
            fires += engines[index].advance(state, switch_at, user_id, switch_at - 1)
            index += 1
            self._enter(state, engines[index], user_id)
        fires += engines[index].advance(state, watermark, user_id)
        state.version = self.names[index]
        return fires

    @staticmethod
    def _enter(state: UserState, engine: Engine, user_id: str | None) -> None:
        """State the new version does not hold for this user: a kept rule outside its rollout.
        (Removed and changed rules' keys are unknown to it; its `advance` drops them.)"""
        partial = engine.rollout.partial
        if partial and user_id is not None and state.rules:
            for key in list(state.rules):
                rule_id = key.partition("#")[0]
                if rule_id in partial and not engine.rollout.runs(rule_id, user_id):
                    del state.rules[key]

    def _engine(self, state: UserState) -> Engine:
        index = self.index.get(state.version) if state.version is not None else None
        return self.engines[index if index is not None else self._index(state, float("inf"))]

    def wakeup(self, state: UserState, activity_delay: int = 0) -> int | None:
        return self._engine(state).wakeup(state, activity_delay)

    def due(self, state: UserState) -> int | None:
        return self._engine(state).due(state)

    def event_types_read(self) -> frozenset[str] | None:
        """Event types any version reads (None: any): what a filter upstream must pass."""
        types: set[str] = set()
        for engine in self.engines:
            read = engine.event_types_read()
            if read is None:
                return None
            types |= read
        return frozenset(types)

    def silence_start_types(self) -> frozenset[str] | None:
        types: set[str] = set()
        for engine in self.engines:
            starts = engine.silence_start_types()
            if starts is None:
                return None
            types |= starts
        return frozenset(types)


class _VersionedFateStep(FateStep):
    """FateStep.release over one user's fate state, each action decided by its version's step."""

    def __init__(self, history: RulesHistory, steps: list[FateStep]):
        self.history = history
        self.steps = steps
        self.caps = tuple(cap for step in steps for cap in step.caps)
        self.longest_per_ms = max(step.longest_per_ms for step in steps)
        self.passthrough = all(step.passthrough for step in steps)

    def _decide(self, state, action):
        return self.steps[self.history.version_index(action.trigger_ts)]._decide(state, action)


class HistoryCampaignStep(CampaignStep):
    """The campaign step over a rules history (see the module doc)."""

    def __init__(self, history: RulesHistory):
        self.engine = history
        self.steps = [CampaignStep(engine) for engine in history.engines]
        self.fate = _VersionedFateStep(history, [step.fate for step in self.steps])
        self.goal_rules = frozenset().union(*(step.goal_rules for step in self.steps))
        self.active = any(step.active for step in self.steps)

    def _decided(self, state, user_id: str, decided) -> list:
        """As CampaignStep's, with the goals of each action's version: only an action whose
        version has a goal for its rule waits for an outcome."""
        history, out = self.engine, []
        for item in decided:
            step = self.steps[history.version_index(item[1].trigger_ts)]
            for kind, record in step._decided(state, user_id, [item]):
                if kind == OUTCOME:
                    record.rules_version = history.names[history.version_index(record.trigger_ts)]
                out.append((kind, record))
        return out

    def outcome(self, user_id: str, aid: str, result: GoalResult, fate: str):
        index = self.engine.version_index(result.trigger_ts)
        outcome = self.steps[index].outcome(user_id, aid, result, fate)
        outcome.rules_version = self.engine.names[index]
        return outcome
