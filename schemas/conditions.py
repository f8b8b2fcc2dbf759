"""Conditions of filters, shared by event filters (rules) and audience filters (profiles)."""

from __future__ import annotations

from typing import Any

FILTER_OPERATORS = ("gt", "gte", "lt", "lte", "ne", "exists")


def _check_scalar(value: object, where: str) -> None:
    if isinstance(value, (dict, list)) or value is None:
        raise ValueError(f"{where}: expected a scalar (string, number or boolean), got {value!r}")


def validate_filter(value: object) -> dict[str, Any]:
    """An event filter: keys event_type, device or properties.<name>, conditions as below."""
    if not isinstance(value, dict):
        raise ValueError(f"a filter must be a mapping of key to condition, got {value!r}")
    for key in value:
        if not isinstance(key, str) or not (
            key in ("event_type", "device")
            or (key.startswith("properties.") and len(key) > len("properties."))
        ):
            raise ValueError(
                f"unknown filter key {key!r} (expected event_type, device or properties.<name>)"
            )
    return validate_conditions(value)


def validate_conditions(value: dict[str, Any]) -> dict[str, Any]:
    """Each condition: a scalar (equals), a non-empty list of scalars (one of) or an operator map
    `{gt|gte|lt|lte|ne: x}` / `{exists: true|false}`."""
    for key, condition in value.items():
        if isinstance(condition, list):
            if not condition:
                raise ValueError(f"{key}: an empty list matches nothing")
            for item in condition:
                _check_scalar(item, key)
        elif isinstance(condition, dict):
            if not condition:
                raise ValueError(f"{key}: an empty operator map")
            for op, operand in condition.items():
                if op not in FILTER_OPERATORS:
                    raise ValueError(
                        f"{key}: unknown operator {op!r} (expected one of "
                        f"{', '.join(FILTER_OPERATORS)})"
                    )
                if op == "exists":
                    if not isinstance(operand, bool):
                        raise ValueError(f"{key}: exists takes true or false, got {operand!r}")
                else:
                    _check_scalar(operand, f"{key}.{op}")
        else:
            _check_scalar(condition, key)
    return value
