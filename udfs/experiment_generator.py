"""A seeded event stream with a known true lift, for measuring a trigger (`moments generate
--scenario experiment`).

Each user does what makes the rule fire once (a silence or absence start, then nothing; the
count's matches or the sequence's steps, a second apart), at a staggered start. The user's arm is
`arm_of(rule, user)`, exactly as the engine assigns it, and with that arm's true rate a goal
event follows inside the goal window; some of the others reach the goal only after the window
closes (at `trigger_ts + within` or later), which must not count. Users outside the rule's
rollout get the same events and no detection.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from schemas.rules import Rule
from udfs.campaign.assign import CONTROL, TREATMENT, arm_of
from udfs.filters import compile_filter
from udfs.model import EngineEvent

DEFAULT_EVENT_TYPE = "event"
STEP_MS = 1_000


class ScenarioError(ValueError):
    """A rule or rates the experiment scenario cannot generate for."""


@dataclass(frozen=True)
class ExperimentSettings:
    true_rates: dict[str | None, float]  # by arm; the key None for a rule without experiment
    users: int = 20_000
    seed: int = 42
    start_ts: int = 1_763_805_600_000
    stagger_ms: int = 50  # between consecutive users' first events
    out_of_order_ms: int = 0
    late_goal_share: float = 0.25  # of users who do not convert: a goal event after the window
    devices: tuple[str, ...] = field(default=("mobile", "web"))


def arms(rule: Rule) -> list[str | None]:
    """Every arm `arm_of` can give for `rule`."""
    experiment = rule.experiment
    if experiment is None:
        return [None]
    found: list[str | None] = [CONTROL] if experiment.holdout > 0 else []
    if experiment.holdout < 1:
        found += [v.name for v in experiment.variants] if experiment.variants else [TREATMENT]
    return found


def check(rule: Rule, true_rates: dict[str | None, float]) -> None:
    """The rule needs a goal; the rates must name exactly its arms, each in [0, 1]."""
    if rule.goal is None:
        raise ScenarioError(f"rule {rule.id} has no goal: nothing to convert to")
    expected = arms(rule)
    missing = [a for a in expected if a not in true_rates]
    unknown = [a for a in true_rates if a not in expected]
    if missing or unknown:
        names = ", ".join(a or "(no experiment: one rate)" for a in expected)
        raise ScenarioError(
            f"rule {rule.id} has the arms {names}; rates given for {_keys(true_rates)}"
        )
    bad = {a: r for a, r in true_rates.items() if not 0 <= r <= 1}
    if bad:
        raise ScenarioError(f"rates must be within 0..1, got {_keys(bad)}")


def _keys(rates: dict[str | None, Any]) -> str:
    return ", ".join(f"{a}={r}" if a else str(r) for a, r in rates.items()) or "nothing"


def example_fields(spec: dict[str, Any] | None) -> dict[str, Any]:
    """`event_type`, `device` and `properties` of an event that matches the filter `spec`."""
    fields: dict[str, Any] = {"event_type": DEFAULT_EVENT_TYPE, "device": None, "properties": {}}
    for key, condition in (spec or {}).items():
        value = _satisfying(condition)
        if value is _ABSENT:
            continue
        if key.startswith("properties."):
            fields["properties"][key[len("properties.") :]] = value
        else:
            fields[key] = value
    event = EngineEvent(0, "x", str(fields["event_type"]), fields["device"], fields["properties"])
    if not compile_filter(spec)(event):
        raise ScenarioError(f"cannot build an event matching the filter {spec!r}")
    return fields


_ABSENT = object()


def _satisfying(condition: Any) -> Any:
    if isinstance(condition, list):
        return condition[0]
    if not isinstance(condition, dict):
        return condition
    if condition.get("exists") is False:
        return _ABSENT
    for op in ("gte", "lte"):
        if op in condition:
            return condition[op]
    if isinstance(condition.get("gt"), int | float):
        return condition["gt"] + 1
    if isinstance(condition.get("lt"), int | float):
        return condition["lt"] - 1
    if "ne" in condition:
        return f"not-{condition['ne']}"
    return "present"


def trigger_plan(rule: Rule, first_ts: int) -> tuple[list[tuple[int, dict]], int, int]:
    """The rule's firing events from `first_ts`: [(ts, fields)], the trigger_ts, and the least
    delay after it at which a goal event counts (DESIGN.md: after the completing event for
    count/sequence, from trigger_ts on for absence/silence)."""
    pattern = rule.pattern
    if pattern.type in ("silence", "absence"):
        wait = pattern.gap if pattern.type == "silence" else pattern.within
        return [(first_ts, example_fields(pattern.start))], first_ts + wait, 0
    filters = [pattern.match] * pattern.threshold if pattern.type == "count" else pattern.steps
    step = max(1, min(STEP_MS, (pattern.within - 1) // max(1, len(filters) - 1)))
    events = [(first_ts + i * step, example_fields(spec)) for i, spec in enumerate(filters)]
    return events, events[-1][0], 1


def _goal_delay(rng: random.Random, least_ms: int, within_ms: int) -> int:
    """A delay in [least_ms, within_ms), mostly early (exponential, mean a sixth of the window)."""
    while True:
        delay = least_ms + int(rng.expovariate(6.0 / within_ms))
        if delay < within_ms:
            return delay


def generate_experiment(rule: Rule, settings: ExperimentSettings) -> Iterator[dict]:
    """The events, in arrival order (by ts, shuffled inside `out_of_order_ms` if asked)."""
    check(rule, settings.true_rates)
    rng = random.Random(settings.seed)
    goal_fields = example_fields(rule.goal.filter())
    within = rule.goal.within
    planned: list[tuple[float, int, dict]] = []
    for n in range(settings.users):
        user = f"u-{n + 1}"
        first_ts = settings.start_ts + n * settings.stagger_ms + rng.randrange(settings.stagger_ms)
        events, trigger_ts, least = trigger_plan(rule, first_ts)
        if rng.random() < settings.true_rates[arm_of(rule, user)]:
            events.append((trigger_ts + _goal_delay(rng, least, within), goal_fields))
        elif rng.random() < settings.late_goal_share:
            events.append((trigger_ts + within + rng.randrange(within), goal_fields))
        device = rng.choice(settings.devices)
        for ts, fields in events:
            event = {"user_id": user, "ts": ts, **fields, "device": fields["device"] or device}
            arrival = ts + rng.random() * settings.out_of_order_ms
            planned.append((arrival, len(planned), event))
    heapq.heapify(planned)
    for number in range(len(planned)):
        _, _, event = heapq.heappop(planned)
        yield {"event_id": f"x-{settings.seed}-{number:08d}", **event}
