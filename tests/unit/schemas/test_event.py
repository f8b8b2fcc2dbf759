import pytest

from schemas.event import parse_ts_ms
from udfs.decode import InvalidEvent, decode_event


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1763805600123, 1763805600123),
        (0, 0),
        ("2025-11-22T10:00:00.123Z", 1763805600123),
        ("2025-11-22T10:00:00.123z", 1763805600123),
        ("2025-11-22T11:00:00.123+01:00", 1763805600123),
        ("2025-11-22T10:00:00.1239Z", 1763805600123),  # sub-ms digits truncated
        ("2025-11-22T10:00:00Z", 1763805600000),
        ("2025-11-22 10:00:00.5-00:30", 1763807400500),
        ("1969-12-31T23:59:59.999Z", -1),
        (1.763805600123e12, 1763805600123),
    ],
)
def test_ts_forms(value, expected):
    assert parse_ts_ms(value) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("2025-11-22T10:00:00", "has no zone"),
        ("yesterday", "neither integer epoch milliseconds nor an RFC 3339"),
        ("2025-13-22T10:00:00Z", "not a valid RFC 3339"),
        ("1763805600123", "neither integer epoch milliseconds"),
        (True, "not a boolean"),
        (1.5, "not an integer number"),
        (None, "got NoneType"),
    ],
)
def test_bad_ts(value, reason):
    with pytest.raises(ValueError, match=reason):
        parse_ts_ms(value)


def test_decode_keeps_unknown_fields_and_defaults_properties():
    event = decode_event(b'{"event_id":"e","user_id":"u","event_type":"t","ts":5,"extra":{"a":1}}')
    assert event.properties == {}
    assert event.model_extra == {"extra": {"a": 1}}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "value: not valid JSON"),
        (b"[]", "value: Input should be an object"),
        (b'{"event_id":"e","user_id":"u","ts":5}', "event_type: required field is missing"),
        (b'{"event_id":"","user_id":"u","event_type":"t","ts":5}', "event_id: String should have"),
        (
            b'{"event_id":"e","user_id":"u","event_type":"t","ts":5,"properties":[1]}',
            "properties: Input should be an object",
        ),
        (b'{"event_id":"e","user_id":"u","event_type":"t","ts":"soon"}', "ts: ts 'soon'"),
        (b"\xff\xfe", "value: not valid JSON"),
    ],
)
def test_invalid_records_name_the_field(raw, reason):
    with pytest.raises(InvalidEvent) as error:
        decode_event(raw)
    assert reason in error.value.reason
