"""Assignment of users to a rule's rollout and arms, by hash: deterministic, the same in the job,
the backtest and any analyst's notebook (DESIGN.md "Assignment").

    h(x) = int(sha256(x).hexdigest()[:15], 16) / 16**15          in [0, 1)
    rollout:  the rule runs for u iff h(salt + "|rollout|" + u) < rollout
    arm:      v = h(salt + "|arm|" + u); control iff v < holdout; else the first variant (file
              order) whose cumulative share of the weights exceeds (v - holdout) / (1 - holdout);
              without variants, treatment.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

from schemas.rules import ActionSpec, Rule

CONTROL = "control"
TREATMENT = "treatment"
_SCALE = 16**15


def h(text: str) -> float:
    """A uniform draw in [0, 1) from the first 15 hex digits of sha256(text)."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:15], 16) / _SCALE


def in_rollout(rule: Rule, user_id: str) -> bool:
    """Whether `rule` runs for `user_id` at all (always, without an experiment)."""
    experiment = rule.experiment
    if experiment is None or experiment.rollout >= 1.0:
        return True
    return h(f"{rule.salt}|rollout|{user_id}") < experiment.rollout


def arm_of(rule: Rule, user_id: str) -> str | None:
    """The user's arm: None without an experiment, `control`, a variant's name or `treatment`."""
    experiment = rule.experiment
    if experiment is None:
        return None
    v = h(f"{rule.salt}|arm|{user_id}")
    holdout = experiment.holdout
    if v < holdout:
        return CONTROL
    if not experiment.variants:
        return TREATMENT
    w = (v - holdout) / (1 - holdout)
    total = sum(variant.weight for variant in experiment.variants)
    cumulative = 0
    for variant in experiment.variants:
        cumulative += variant.weight
        if cumulative / total > w:
            return variant.name
    return experiment.variants[-1].name  # w < 1 always; rounding only


def action_spec(rule: Rule, arm: str | None) -> ActionSpec:
    """The action an arm gets: its variant's, else the rule's (control's too: it is recorded,
    never sent)."""
    if arm is not None and rule.experiment is not None:
        for variant in rule.experiment.variants or ():
            if variant.name == arm:
                return variant.action
    return rule.action


class Rollout:
    """`in_rollout` for one rule set, memoised per (rule, user) for rules with a partial rollout;
    rules with none (or 100%) cost nothing per user."""

    def __init__(self, rules: list[Rule], cache_size: int = 65_536):
        self.partial = frozenset(
            rule.id for rule in rules if rule.experiment and rule.experiment.rollout < 1.0
        )
        by_id = {rule.id: rule for rule in rules}
        self._runs = lru_cache(maxsize=cache_size)(
            lambda rule_id, user_id: in_rollout(by_id[rule_id], user_id)
        )

    def runs(self, rule_id: str, user_id: str) -> bool:
        return rule_id not in self.partial or self._runs(rule_id, user_id)
