"""Decoding raw event bytes against the event contract, and the dead-letter record for failures.

Used by every host that reads raw input (the backtest, the Flink job's Python path), so a record
is judged the same way everywhere.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from schemas.event import Event, describe_validation_error


class InvalidEvent(Exception):
    """A record that fails the event contract; `reason` says which field and why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def decode_event(raw: bytes | str) -> Event:
    """Parse one JSON record into an Event or raise InvalidEvent with a specific reason."""
    try:
        return Event.model_validate_json(raw)
    except ValidationError as error:
        raise InvalidEvent(describe_validation_error(error)) from None


def validate_event(record: dict[str, Any]) -> Event:
    """Validate an already-decoded record (e.g. a Parquet row)."""
    try:
        return Event.model_validate(record)
    except ValidationError as error:
        raise InvalidEvent(describe_validation_error(error)) from None


def raw_text(raw: bytes | str) -> str:
    if isinstance(raw, str):
        return raw
    return raw.decode("utf-8", errors="backslashreplace")


def dead_letter(raw: bytes | str, reason: str, **where: Any) -> dict[str, Any]:
    """A dead-letter record: the raw value, the reason, and where it came from (source and offset,
    or topic, partition and offset)."""
    return {"reason": reason, **where, "raw": raw_text(raw)}


def dead_letter_json(raw: bytes | str, reason: str, **where: Any) -> str:
    return json.dumps(dead_letter(raw, reason, **where), ensure_ascii=False)
