"""The event contract: one Kafka message value or one JSONL line (DESIGN.md, "Event contract")."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DATE_TIME_START = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]")


def parse_ts_ms(value: object) -> int:
    """Event time as integer epoch milliseconds, from an integer or an RFC 3339 string with a zone.

    Sub-millisecond digits of a string are truncated toward the past (floor), so the millisecond
    a producer wrote is the one kept.
    """
    if isinstance(value, bool):
        raise ValueError(
            "ts must be integer epoch milliseconds or an RFC 3339 string, not a boolean"
        )
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        raise ValueError(f"ts {value!r} is not an integer number of epoch milliseconds")
    if isinstance(value, str):
        text = value.strip()
        if not _DATE_TIME_START.match(text):
            raise ValueError(
                f"ts {value!r} is neither integer epoch milliseconds nor an RFC 3339 date-time"
            )
        try:
            parsed = datetime.fromisoformat(text.replace("z", "Z"))
        except ValueError:
            raise ValueError(f"ts {value!r} is not a valid RFC 3339 date-time") from None
        if parsed.tzinfo is None or parsed.utcoffset() is None:
            raise ValueError(f"ts {value!r} has no zone (add Z or an offset such as +02:00)")
        delta = parsed - _EPOCH
        return delta.days * 86_400_000 + delta.seconds * 1_000 + delta.microseconds // 1_000
    raise ValueError(
        f"ts must be integer epoch milliseconds or an RFC 3339 string, got {type(value).__name__}"
    )


class Event(BaseModel):
    """A user event. Unknown top-level fields are kept (model extra), never an error."""

    model_config = ConfigDict(extra="allow", frozen=False)

    event_id: str = Field(
        min_length=1, description="Unique id of the event (tie-breaker in ordering)."
    )
    user_id: str = Field(min_length=1, description="The user the rules key by.")
    event_type: str = Field(min_length=1, description="What happened, e.g. add_to_cart.")
    ts: int = Field(
        description="Event time: integer epoch milliseconds, or an RFC 3339 string with a zone "
        "(normalised to epoch milliseconds).",
        json_schema_extra={
            "anyOf": [{"type": "integer"}, {"type": "string", "format": "date-time"}]
        },
    )
    properties: dict[str, Any] = Field(default_factory=dict)
    device: str | None = None
    session_id: str | None = None

    @field_validator("ts", mode="before")
    @classmethod
    def _ts(cls, value: object) -> int:
        return parse_ts_ms(value)

    @field_validator("properties", mode="before")
    @classmethod
    def _properties(cls, value: object) -> object:
        return {} if value is None else value


def describe_validation_error(error: ValidationError) -> str:
    """One line naming each failing field and why, for dead-letter records and CLI output."""
    parts = []
    for item in error.errors(include_url=False):
        field = ".".join(str(p) for p in item["loc"]) or "value"
        message = item["msg"]
        if item["type"] == "missing":
            message = "required field is missing"
        elif message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        elif item["type"] == "json_invalid":
            field = "value"
            message = f"not valid JSON ({item.get('ctx', {}).get('error', message)})"
        parts.append(f"{field}: {message}")
    return "; ".join(parts)
