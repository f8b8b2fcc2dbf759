"""Durations as rule files write them (`150ms`, `45s`, `2m`, `1h`, `1d`), parsed to milliseconds."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator, WithJsonSchema

_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d)\s*$")


def parse_duration_ms(value: object) -> int:
    """The duration in milliseconds; ValueError with a reason a rule author can act on."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(f"duration must be a string like 150ms, 45s, 2m, 1h or 1d, got {value!r}")
    match = _DURATION.match(value)
    if not match:
        raise ValueError(
            f"bad duration {value!r}: expected an integer and a unit (ms, s, m, h, d), e.g. 45s"
        )
    amount, unit = int(match.group(1)), match.group(2)
    if amount <= 0:
        raise ValueError(f"duration {value!r} must be greater than zero")
    return amount * _UNIT_MS[unit]


#: A duration field of a model: written `45s`, held as milliseconds.
DurationMs = Annotated[
    int,
    BeforeValidator(parse_duration_ms),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^\d+(ms|s|m|h|d)$",
            "description": "A duration: an integer and a unit, e.g. 150ms, 45s, 2m, 1h, 1d.",
        }
    ),
]


def format_duration_ms(duration_ms: int) -> str:
    """The shortest exact spelling of a duration, for summaries (90000 -> 90s)."""
    for unit in ("d", "h", "m", "s"):
        if duration_ms % _UNIT_MS[unit] == 0:
            return f"{duration_ms // _UNIT_MS[unit]}{unit}"
    return f"{duration_ms}ms"
