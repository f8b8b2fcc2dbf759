"""Rule filters compiled once into predicates over engine events.

Semantics (documented in README): all keys of a filter must hold; a scalar means equals, a list
means one of, an operator map applies every operator given. A field the event does not have
matches only `{exists: false}` and `ne`; comparisons between a number and a string are false, never
an error. Booleans equal only booleans (true is not 1).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from udfs.model import EngineEvent

Predicate = Callable[[EngineEvent], bool]
_MISSING = object()


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return a == b


def _comparable(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return False
    numbers = (int, float)
    return (isinstance(a, numbers) and isinstance(b, numbers)) or (
        isinstance(a, str) and isinstance(b, str)
    )


def _condition(condition: Any) -> Callable[[Any], bool]:
    if isinstance(condition, list):
        options = list(condition)
        return lambda v: v is not _MISSING and any(_same(v, o) for o in options)
    if isinstance(condition, dict):
        checks = [_operator(op, operand) for op, operand in condition.items()]
        return lambda v: all(check(v) for check in checks)
    return lambda v: v is not _MISSING and _same(v, condition)


def _operator(op: str, operand: Any) -> Callable[[Any], bool]:
    if op == "exists":
        return (lambda v: v is not _MISSING) if operand else (lambda v: v is _MISSING)
    if op == "ne":
        return lambda v: v is _MISSING or not _same(v, operand)
    compare = {
        "gt": lambda v: v > operand,
        "gte": lambda v: v >= operand,
        "lt": lambda v: v < operand,
        "lte": lambda v: v <= operand,
    }[op]
    return lambda v: v is not _MISSING and _comparable(v, operand) and compare(v)


def _getter(key: str) -> Callable[[EngineEvent], Any]:
    if key == "event_type":
        return lambda e: e.event_type
    if key == "device":
        return lambda e: _MISSING if e.device is None else e.device
    name = key[len("properties.") :]
    return lambda e: e.properties.get(name, _MISSING)


def compile_filter(spec: dict[str, Any] | None) -> Predicate:
    """Compile a validated filter; an empty or absent filter matches every event."""
    if not spec:
        return lambda e: True
    parts = []
    for key, condition in spec.items():
        if key == "event_type" and isinstance(condition, str):
            # The common case, kept to one comparison on the hot path.
            parts.append(lambda e, t=condition: e.event_type == t)
            continue
        get, test = _getter(key), _condition(condition)
        parts.append(lambda e, get=get, test=test: test(get(e)))
    if len(parts) == 1:
        return parts[0]
    return lambda e: all(p(e) for p in parts)


def event_types_of(spec: dict[str, Any] | None) -> frozenset[str] | None:
    """The event types a filter can match, or None when it may match any type."""
    if not spec or "event_type" not in spec:
        return None
    condition = spec["event_type"]
    if isinstance(condition, str):
        return frozenset([condition])
    if isinstance(condition, list) and all(isinstance(c, str) for c in condition):
        return frozenset(condition)
    return None


def compile_profile_filter(spec: dict[str, Any] | None) -> Callable[[dict[str, Any]], bool]:
    """Compile a validated audience (keys `profile.<field>`) into a predicate over a CRM profile,
    with the conditions of event filters. A field the profile lacks, or holds as null (a NULL
    column), is missing: it matches only `{exists: false}` and `ne`. An empty or absent audience
    matches every profile."""
    if not spec:
        return lambda profile: True
    parts = []
    for key, condition in spec.items():
        name = key[len("profile.") :] if key.startswith("profile.") else key
        test = _condition(condition)

        def part(profile, name=name, test=test):
            value = profile.get(name)
            return test(_MISSING if value is None else value)

        parts.append(part)
    if len(parts) == 1:
        return parts[0]
    return lambda profile: all(p(profile) for p in parts)
