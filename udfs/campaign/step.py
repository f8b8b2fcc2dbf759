"""The campaign step of a host, after detection and enrichment: each action's fate
(udfs/campaign/fate.py) and the outcome records that join a goal's result to that fate.

Per user, `CampaignState` holds the fate step's state, the fates of actions whose outcome is not
resolved yet, and the goal results that came before their action's fate (an action held for its
profile is decided later than its goal may resolve). `release(state, user, event_time)` returns
`(kind, record)` pairs: `action` (sent now, or deferred and now due), `suppressed` (with its
reason) and `outcome`. `event_time` is the user's event time after the engine advanced: every
fire with a trigger_ts below it is out (udfs/host.py:Host.event_time).
"""

from __future__ import annotations

from schemas.action import Action, action_id
from schemas.outcome import Outcome, outcome_id
from udfs.campaign.assign import arm_of
from udfs.campaign.fate import FateState, FateStep
from udfs.campaign.goals import GoalResult

ACTION, SUPPRESSED, OUTCOME = "action", "suppressed", "outcome"
SENT, DEFERRED = "sent", "deferred"


class CampaignState:
    __slots__ = ("fate", "fates", "results")

    def __init__(self) -> None:
        self.fate = FateState()
        self.fates: dict[str, str] = {}  # action_id -> fate, until its outcome resolves
        self.results: dict[str, GoalResult] = {}  # action_id -> result, until its fate is known

    def __getstate__(self) -> tuple:
        return (self.fate, self.fates, self.results)

    def __setstate__(self, state: tuple) -> None:
        (self.fate, self.fates, self.results) = state

    def __repr__(self) -> str:
        return f"CampaignState({self.fate!r}, fates={self.fates!r}, results={self.results!r})"


class CampaignStep:
    """The fate step and outcomes of an engine's rule set. `active` is False when the rule set
    uses none of the campaign layer: a host then emits every action as it fires, as before."""

    def __init__(self, engine):
        self.engine = engine
        self.fate = FateStep(engine.rules if engine.limits is None else _with_limits(engine))
        self.goal_rules = frozenset(engine.goals.by_rule)
        self.active = not self.fate.passthrough or bool(self.goal_rules)

    def is_empty(self, state: CampaignState) -> bool:
        return self.fate.is_empty(state.fate) and not state.fates and not state.results

    def submit(self, state: CampaignState, action: Action) -> list:
        """An enriched action, in its user's order; without fates to decide (no audience,
        holdout or limits: goals alone) it is sent at once and the outputs are returned."""
        if self.fate.passthrough:
            return self._decided(state, action.user_id, [(SENT, action)])
        self.fate.submit(state.fate, action)
        return []

    def on_goal(self, state: CampaignState, user_id: str, result: GoalResult) -> list:
        """A goal's result: its outcome now if its action's fate is known, else later."""
        aid = action_id(result.rule_id, user_id, result.trigger_ts)
        fate = state.fates.pop(aid, None)
        if fate is None:
            state.results[aid] = result
            return []
        return [(OUTCOME, self.outcome(user_id, aid, result, fate))]

    def release(
        self, state: CampaignState, user_id: str, event_time: float, forget_until=None
    ) -> list:
        """`forget_until`: as in FateStep.release (an idle-forced `event_time` is not a time
        below which no action can come any more)."""
        decided, due = self.fate.release(state.fate, event_time, forget_until)
        out = self._decided(state, user_id, decided)
        out.extend((ACTION, action) for action in due)
        return out

    def _decided(self, state: CampaignState, user_id: str, decided) -> list:
        out = []
        for fate, action in decided:
            if fate == SENT:
                out.append((ACTION, action))
            elif fate != DEFERRED:
                out.append((SUPPRESSED, action))
            if action.rule_id in self.goal_rules:
                result = state.results.pop(action.action_id, None)
                if result is None:
                    state.fates[action.action_id] = fate
                else:
                    out.append((OUTCOME, self.outcome(user_id, action.action_id, result, fate)))
        return out

    def wakeup(self, state: CampaignState) -> int | None:
        """When `release` has work: a decision, a deferred action due, or counted actions to
        forget (so an idle user's state empties)."""
        fate = self.fate
        times = [t for t in (fate.wakeup(state.fate), fate.forget_at(state.fate)) if t is not None]
        return min(times) if times else None

    def outcome(self, user_id: str, aid: str, result: GoalResult, fate: str) -> Outcome:
        rule = self.engine.by_id[result.rule_id]
        converted = result.goal_ts is not None
        return Outcome(
            outcome_id=outcome_id(aid),
            action_id=aid,
            rule_id=rule.id,
            user_id=user_id,
            experiment=rule.salt,
            arm=arm_of(rule, user_id),
            fate=fate,
            trigger_ts=result.trigger_ts,
            converted=converted,
            goal_ts=result.goal_ts,
            time_to_goal_ms=result.goal_ts - result.trigger_ts if converted else None,
            goal_event_id=result.goal_event_id,
        )


def _with_limits(engine):
    from schemas.rules import RuleSet

    return RuleSet(engine.rules, engine.limits)
