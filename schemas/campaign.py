"""The campaign layer's contract (DESIGN.md "Campaign layer"): a rule's `audience`, `experiment`
and `goal`, and the rules file's top-level `limits` (frequency caps and quiet hours).

Validated here with the rules file, so a bad experiment or cap is rejected before any job starts
with the rule (or `-` for `limits`), the field and the reason.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from schemas.conditions import validate_conditions, validate_filter
from schemas.durations import DurationMs

_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")
_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
PROFILE_FIELD = re.compile(r"^profile\.[A-Za-z0-9_]+$")


def parse_share(value: object) -> float:
    """A share of users: `25%` or `0.25`, in [0, 1]."""
    if isinstance(value, bool):
        raise ValueError(f"expected a share such as 25% or 0.25, got {value!r}")
    if isinstance(value, str):
        match = _PERCENT.match(value)
        if match:
            share = float(match.group(1)) / 100
        else:
            try:
                share = float(value)
            except ValueError:
                raise ValueError(f"expected a share such as 25% or 0.25, got {value!r}") from None
    elif isinstance(value, (int, float)):
        share = float(value)
    else:
        raise ValueError(f"expected a share such as 25% or 0.25, got {value!r}")
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"a share must be in [0, 1] (0%-100%), got {value!r}")
    return share


Share = Annotated[
    float,
    BeforeValidator(parse_share),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0, "maximum": 1},
                {"type": "string", "pattern": r"^\d+(\.\d+)?%$"},
            ],
            "description": "A share of users: 25% or 0.25, in [0, 1].",
        }
    ),
]


def _validate_clock(value: object) -> str:
    if not isinstance(value, str) or not _CLOCK.match(value):
        raise ValueError(f"expected a local time HH:MM (00:00-23:59), got {value!r}")
    return value


Clock = Annotated[
    str,
    BeforeValidator(_validate_clock),
    WithJsonSchema({"type": "string", "pattern": r"^([01]\d|2[0-3]):[0-5]\d$"}),
]


def _validate_zone(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected an IANA time zone such as Europe/Paris, got {value!r}")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone {value!r}") from None
    return value


Zone = Annotated[
    str,
    BeforeValidator(_validate_zone),
    WithJsonSchema({"type": "string", "description": "An IANA time zone, e.g. Europe/Paris."}),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _validate_audience(value: object) -> dict[str, Any]:
    """An audience is a filter over `profile.<field>` keys, with the filters' operators."""
    if not isinstance(value, dict) or not value:
        raise ValueError(
            f"an audience is a non-empty mapping of profile.<field> to a condition, got {value!r}"
        )
    for key in value:
        if not isinstance(key, str) or not PROFILE_FIELD.match(key):
            raise ValueError(f"unknown audience key {key!r} (expected profile.<field>)")
    return validate_conditions(value)


Audience = Annotated[
    dict[str, Any],
    BeforeValidator(_validate_audience),
    WithJsonSchema(
        {
            "type": "object",
            "minProperties": 1,
            "description": "Filters on the enriched CRM profile: keys profile.<field>, values as "
            "in event filters (scalar, list, operator map). All keys must hold.",
            "propertyNames": {"pattern": PROFILE_FIELD.pattern},
        }
    ),
]


class Goal(BaseModel):
    """What counts as converting: an event filter and a window after the trigger."""

    model_config = ConfigDict(extra="allow", frozen=True)

    within: DurationMs = Field(description="The conversion window after the trigger.")

    def filter(self) -> dict[str, Any]:
        """The goal's event filter: every key but `within`."""
        return dict(self.model_extra or {})

    @model_validator(mode="after")
    def _filter_valid(self) -> Goal:
        spec = self.filter()
        if not spec:
            raise ValueError("a goal needs a filter (e.g. event_type: purchase) besides `within`")
        validate_filter(spec)
        return self


class Cap(_Strict):
    """At most `max` actions per user in any `per`, across every rule of the file."""

    max: int = Field(ge=1)
    per: DurationMs
    destinations: list[Literal["kafka", "braze", "iterable"]] | None = Field(
        None, min_length=1, description="Count and cap only actions naming one of these."
    )

    @field_validator("per")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("must be a positive duration")
        return value


class QuietHours(_Strict):
    """No action between `start` (inclusive) and `end` (exclusive), in the user's local time."""

    start: Clock
    end: Clock
    timezone: str | None = Field(
        None, description="profile.<field> holding an IANA zone (else default_timezone)."
    )
    default_timezone: Zone = "UTC"
    mode: Literal["drop", "defer"] = "defer"

    @field_validator("timezone")
    @classmethod
    def _profile_field(cls, value: str | None) -> str | None:
        if value is not None and not PROFILE_FIELD.match(value):
            raise ValueError(f"expected profile.<field> holding an IANA zone, got {value!r}")
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError(f"start and end are both {self.start}: the window would be empty")
        return self


class Limits(_Strict):
    """File-level limits, per user across every rule."""

    caps: list[Cap] = Field(default_factory=list)
    quiet_hours: QuietHours | None = None
