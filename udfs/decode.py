"""Decoding raw event bytes against the event contract, and the dead-letter record for failures.

Used by every host that reads raw input (the backtest, the Flink job's Python path), so a record
is judged the same way everywhere.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from schemas.durations import format_duration_ms
from schemas.event import Event, describe_validation_error

# Guard rails (one bad producer must not harm other users): a record is at most 1 MiB, the ids
# 1..512 bytes of UTF-8, ts in [0, now + max_future] and never past the year 9999 (the last
# RFC 3339 date-time; beyond it Flink's timers and SQL timestamps overflow). The JVM decoder
# (udfs/jvm DecodeEvent, EventTime) applies the same numbers.
MAX_RECORD_BYTES = 1 << 20
MAX_ID_BYTES = 512
ID_FIELDS = ("event_id", "user_id", "event_type")
DEFAULT_MAX_FUTURE_MS = 3_600_000
MAX_TS_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
# At most 6 bytes a character once escaped in JSON: a dead-letter record stays below 1 MiB.
MAX_DEAD_LETTER_RAW_CHARS = 128 * 1024


class InvalidEvent(Exception):
    """A record that fails the event contract; `reason` says which field and why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def decode_event(
    raw: bytes | str,
    now_ms: int | None = None,
    max_future_ms: int | None = DEFAULT_MAX_FUTURE_MS,
) -> Event:
    """Parse one JSON record into an Event or raise InvalidEvent with a specific reason.

    The guard rails apply (`check_guard_rails`): `now_ms` is wall-clock time unless given, and
    `max_future_ms` None lifts the future bound (`--max-future off`).
    """
    _check_size(record_bytes(raw))
    try:
        event = Event.model_validate_json(raw)
    except ValidationError as error:
        raise InvalidEvent(describe_validation_error(error)) from None
    check_guard_rails(event, now_ms, max_future_ms)
    return event


def validate_event(
    record: dict[str, Any],
    now_ms: int | None = None,
    max_future_ms: int | None = DEFAULT_MAX_FUTURE_MS,
) -> Event:
    """Validate an already-decoded record (e.g. a Parquet row), guard rails included; its size
    is that of the row as JSON (what a dead-letter record carries as `raw`)."""
    _check_size(len(json.dumps(record, default=str, ensure_ascii=False).encode()))
    try:
        event = Event.model_validate(record)
    except ValidationError as error:
        raise InvalidEvent(describe_validation_error(error)) from None
    check_guard_rails(event, now_ms, max_future_ms)
    return event


def record_bytes(raw: bytes | str) -> int:
    """The size of a record in bytes (a str counts as its UTF-8 encoding)."""
    if isinstance(raw, str):
        if len(raw) * 4 <= MAX_RECORD_BYTES:
            return len(raw)  # certainly within the limit: no need to encode
        return len(raw.encode("utf-8", "surrogatepass"))
    return len(raw)


def _check_size(size: int) -> None:
    if size > MAX_RECORD_BYTES:
        raise InvalidEvent(f"record: {size} bytes, over the 1 MiB limit ({MAX_RECORD_BYTES} bytes)")


def check_guard_rails(event: Event, now_ms: int | None, max_future_ms: int | None) -> None:
    """Raise InvalidEvent naming every guard rail the event breaks: an id outside 1..512 bytes of
    UTF-8, or ts below 0, past now + max_future, or past the year 9999."""
    problems = []
    for name in ID_FIELDS:
        value = getattr(event, name)
        if len(value) * 4 > MAX_ID_BYTES:  # else certainly within (at most 4 bytes a character)
            size = len(value.encode("utf-8", "surrogatepass"))
            if size > MAX_ID_BYTES:
                problems.append(f"{name}: {size} bytes of UTF-8, over the 512-byte limit")
    ts = event.ts
    if ts < 0:
        problems.append(f"ts: {ts} ({_iso(ts)}) is before 1970-01-01T00:00:00Z; ts must be >= 0")
    elif ts > MAX_TS_MS:
        problems.append(f"ts: {ts} is after 9999-12-31T23:59:59.999Z")
    elif max_future_ms is not None:
        now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        if ts > now + max_future_ms:
            problems.append(
                f"ts: {ts} ({_iso(ts)}) is more than {_duration(max_future_ms)} "
                f"ahead of now ({_iso(now)}); the bound is --max-future"
            )
    if problems:
        raise InvalidEvent("; ".join(problems))


def _duration(ms: int) -> str:
    return format_duration_ms(ms) if ms > 0 else "0ms"


def _iso(ms: int) -> str:
    """Epoch ms as an RFC 3339 UTC date-time with milliseconds ('out of range' before year 1)."""
    try:
        moment = datetime.fromtimestamp(ms // 1000, UTC).replace(microsecond=ms % 1000 * 1000)
    except (OverflowError, OSError, ValueError):
        return "out of range"
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def raw_text(raw: bytes | str) -> str:
    if isinstance(raw, str):
        return raw
    return raw.decode("utf-8", errors="backslashreplace")


def dead_letter(raw: bytes | str, reason: str, **where: Any) -> dict[str, Any]:
    """A dead-letter record: the raw value, the reason, and where it came from (source and offset,
    or topic, partition and offset). A raw value longer than MAX_DEAD_LETTER_RAW_CHARS is cut
    there and `raw_bytes` gives its full size, so a dead-letter record always fits a Kafka message
    (1 MiB by default) whatever the poisoned input was."""
    text = raw_text(raw)
    if len(text) <= MAX_DEAD_LETTER_RAW_CHARS:
        return {"reason": reason, **where, "raw": text}
    cut = text[:MAX_DEAD_LETTER_RAW_CHARS]
    return {"reason": reason, **where, "raw": cut, "raw_bytes": record_bytes(raw)}


def dead_letter_json(raw: bytes | str, reason: str, **where: Any) -> str:
    return json.dumps(dead_letter(raw, reason, **where), ensure_ascii=False)
