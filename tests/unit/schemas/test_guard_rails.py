"""The decoder's guard rails (DESIGN.md "Event contract"): ts in [0, now + max_future], ids of
1..512 bytes of UTF-8, records of at most 1 MiB; each breach is an InvalidEvent naming it. `now`
is pinned, so the boundaries are exact."""

from __future__ import annotations

import json

import pytest

from udfs.decode import (
    MAX_DEAD_LETTER_RAW_CHARS,
    MAX_RECORD_BYTES,
    MAX_TS_MS,
    InvalidEvent,
    dead_letter_json,
    decode_event,
    validate_event,
)

NOW = 1_763_805_600_000  # 2025-11-22T10:00:00Z
HOUR = 3_600_000
BASE = {"event_id": "e", "user_id": "u", "event_type": "t", "ts": NOW}


def decode(record: dict | str | bytes, max_future_ms: int | None = HOUR):
    raw = json.dumps(record) if isinstance(record, dict) else record
    return decode_event(raw, now_ms=NOW, max_future_ms=max_future_ms)


def reason(record, max_future_ms: int | None = HOUR) -> str:
    with pytest.raises(InvalidEvent) as error:
        decode(record, max_future_ms)
    return error.value.reason


@pytest.mark.parametrize("ts", [0, NOW, NOW + HOUR])
def test_ts_within_the_bounds_is_accepted(ts):
    assert decode(BASE | {"ts": ts}).ts == ts


def test_ts_one_ms_past_the_future_bound_is_rejected_with_the_bound_and_now():
    text = reason(BASE | {"ts": NOW + HOUR + 1})
    assert text == (
        f"ts: {NOW + HOUR + 1} (2025-11-22T11:00:00.001Z) is more than 1h ahead of now "
        "(2025-11-22T10:00:00.000Z); the bound is --max-future"
    )


def test_year_9999_is_rejected_and_the_bound_follows_now():
    assert reason(BASE | {"ts": "9999-12-31T23:59:59.999Z"}).startswith(
        f"ts: {MAX_TS_MS} (9999-12-31T23:59:59.999Z) is more than 1h ahead of now"
    )
    later = decode_event(json.dumps(BASE | {"ts": NOW + 2 * HOUR}), now_ms=NOW + HOUR)
    assert later.ts == NOW + 2 * HOUR


def test_a_zero_bound_allows_nothing_ahead_of_now():
    assert decode(BASE, max_future_ms=0).ts == NOW
    assert "more than 0ms ahead of now" in reason(BASE | {"ts": NOW + 1}, max_future_ms=0)


def test_off_lifts_the_future_bound_but_not_the_year_9999():
    assert decode(BASE | {"ts": MAX_TS_MS}, max_future_ms=None).ts == MAX_TS_MS
    assert reason(BASE | {"ts": MAX_TS_MS + 1}, max_future_ms=None) == (
        f"ts: {MAX_TS_MS + 1} is after 9999-12-31T23:59:59.999Z"
    )


@pytest.mark.parametrize("ts", [-1, "1969-12-31T23:59:59.999Z", -(10**17)])
def test_negative_ts_is_rejected(ts):
    assert "is before 1970-01-01T00:00:00Z; ts must be >= 0" in reason(BASE | {"ts": ts})


@pytest.mark.parametrize("field", ["event_id", "user_id", "event_type"])
def test_ids_are_1_to_512_bytes_of_utf8(field):
    assert decode(BASE | {field: "x" * 512}) is not None
    assert reason(BASE | {field: "x" * 513}) == (
        f"{field}: 513 bytes of UTF-8, over the 512-byte limit"
    )
    assert "at least 1 character" in reason(BASE | {field: ""})


def test_multibyte_ids_count_bytes_not_characters():
    # 170 three-byte characters + 2 ASCII = 512 bytes; one more ASCII byte is over.
    assert decode(BASE | {"user_id": "\u2603" * 170 + "ab"}).user_id.endswith("ab")
    assert "513 bytes" in reason(BASE | {"user_id": "\u2603" * 170 + "abc"})
    # 128 four-byte characters (surrogate pairs in JSON escapes) = 512 bytes; 129 is over.
    assert decode(BASE | {"event_id": "\U0001f600" * 128}) is not None
    assert "516 bytes" in reason(BASE | {"event_id": "\U0001f600" * 129})
    # Two-byte characters: 256 fit exactly.
    assert decode(BASE | {"event_type": "\u00e9" * 256}) is not None
    assert "514 bytes" in reason(BASE | {"event_type": "\u00e9" * 257})


def test_every_breach_is_named():
    text = reason(BASE | {"event_id": "x" * 600, "ts": -5})
    assert text.startswith("event_id: 600 bytes") and "; ts: -5 " in text


def padded(size: int) -> bytes:
    """A valid record of exactly `size` bytes (padding in a property)."""
    shell = json.dumps(BASE | {"properties": {"pad": ""}}).encode()
    record = json.dumps(BASE | {"properties": {"pad": "p" * (size - len(shell))}}).encode()
    assert len(record) == size
    return record


def test_records_are_at_most_1_mib():
    assert decode(padded(MAX_RECORD_BYTES)).event_id == "e"
    assert reason(padded(MAX_RECORD_BYTES + 1)) == (
        f"record: {MAX_RECORD_BYTES + 1} bytes, over the 1 MiB limit ({MAX_RECORD_BYTES} bytes)"
    )


def test_a_text_record_counts_its_utf8_bytes():
    # 349,526 three-byte characters: 1,048,578 bytes of UTF-8 with the rest of the record.
    text = json.dumps(BASE | {"properties": {"s": "\u2603" * 349_526}}, ensure_ascii=False)
    assert len(text) < MAX_RECORD_BYTES < len(text.encode())
    assert reason(text).startswith(f"record: {len(text.encode())} bytes, over the 1 MiB limit")


def test_parquet_rows_get_the_same_rails():
    assert validate_event(BASE, now_ms=NOW).ts == NOW
    with pytest.raises(InvalidEvent, match="more than 1h ahead of now"):
        validate_event(BASE | {"ts": NOW + HOUR + 1}, now_ms=NOW)
    with pytest.raises(InvalidEvent, match="user_id: 513 bytes"):
        validate_event(BASE | {"user_id": "u" * 513}, now_ms=NOW)
    with pytest.raises(InvalidEvent, match="over the 1 MiB limit"):
        validate_event(BASE | {"properties": {"pad": "p" * MAX_RECORD_BYTES}}, now_ms=NOW)


def test_now_defaults_to_the_wall_clock():
    import time

    now = time.time_ns() // 1_000_000
    assert decode_event(json.dumps(BASE | {"ts": now})).ts == now
    with pytest.raises(InvalidEvent, match="ahead of now"):
        decode_event(json.dumps(BASE | {"ts": now + 2 * HOUR}))


def test_a_dead_letter_record_fits_a_kafka_message_whatever_the_record():
    small = json.loads(dead_letter_json(b'{"a": 1}', "why", topic="t", partition=0, offset=7))
    assert small == {"reason": "why", "topic": "t", "partition": 0, "offset": 7, "raw": '{"a": 1}'}
    huge = ("\u0001" * (2 << 20)).encode()  # escaped as \u0001 in JSON: 6 bytes a character
    record = dead_letter_json(huge, "why", source="f", offset=1)
    assert len(record.encode()) < MAX_RECORD_BYTES
    parsed = json.loads(record)
    assert parsed["raw"] == "\u0001" * MAX_DEAD_LETTER_RAW_CHARS
    assert parsed["raw_bytes"] == 2 << 20
