"""The scope of a job's live rules (`moments run --rules-topic T --rules-scope FILE`): the JVM
filters (the prefilter of unread event types, the activity filter) and the engine's activity
buckets are built from the scope's rules once, and a version is accepted only if it reads
nothing those filters drop or summarise. Every accepted version then sees exactly the events it
would see unfiltered, whenever it arrives: the switch stays exact and the filters stay on.
"""

from __future__ import annotations

from schemas.rules import Rule, RuleError, RuleSet
from udfs.engine import Engine, union_of_types


class RulesScope:
    """The rules a scope file declares, as the filters read them (an Engine of them)."""

    def __init__(self, rules: RuleSet | list[Rule]):
        self.engine = Engine(rules)

    def problems(self, rules: RuleSet | list[Rule]) -> list[RuleError]:
        """What in `rules` the scope's filters could hide from it, as rule/field/reason."""
        scope = self.engine
        read = scope.event_types_read()  # None: the prefilter passes every type
        filtered = scope.filtered_types  # None: no activity is summarised
        starts = scope.silence_start_types() if filtered is not None else None
        found: list[RuleError] = []
        for rule in rules:
            one = Engine([rule])
            types = one.event_types_read()
            if read is not None and (types is None or not types <= read):
                what = "every event type" if types is None else _names(types - read)
                found.append(_problem(rule, f"reads {what}, which the scope drops upstream"))
            if filtered is None:
                continue
            named = _filter_types(one)
            if named is None or not named <= filtered:
                what = "any event type" if named is None else _names(named - filtered)
                found.append(
                    _problem(rule, f"filters on {what}, which the scope summarises as activity")
                )
            gaps = [p.gap_ms for p in one.patterns if p.reads_every_event]
            if gaps and min(gaps) < scope.activity_bucket_ms:
                found.append(
                    _problem(
                        rule,
                        f"a silence gap of {min(gaps)} ms, under the scope's smallest "
                        f"({scope.activity_bucket_ms} ms) that activity is summarised by",
                    )
                )
            own = one.silence_start_types()
            if starts is not None and gaps and (own is None or not own <= starts):
                what = "any event type" if own is None else _names(own - starts)
                found.append(
                    _problem(rule, f"a silence started by {what}, which no silence of the scope is")
                )
        return found


def _filter_types(engine: Engine) -> frozenset[str] | None:
    named = [p.filter_types() for p in engine.patterns]
    return union_of_types([*named, engine.goals.event_types()])


def _names(types: frozenset[str]) -> str:
    return ", ".join(sorted(types))


def _problem(rule: Rule, reason: str) -> RuleError:
    return RuleError(rule.id, "pattern", f"{reason} (--rules-scope)")
