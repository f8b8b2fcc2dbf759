"""The JVM side of Kafka mode (jobs/connectors/prefilter.py, udfs/jvm's moments_decode): it vouches
for a record only when Python's decoder accepts it, with the same fields, and drops only such
records of types no rule reads. It may pass too much to Python, never drop or misread what Python
must see."""

from __future__ import annotations

import json
import time

import pytest

from udfs.decode import InvalidEvent, decode_event

pytestmark = pytest.mark.integration
READ = ["add_to_cart"]
BASE = {"event_id": "e", "user_id": "u", "event_type": "page_view", "ts": 5}
CASES = [
    json.dumps(BASE),
    json.dumps(BASE | {"event_type": "add_to_cart"}),
    json.dumps(BASE | {"ts": "2025-01-01T00:00:00Z"}),
    json.dumps(BASE | {"ts": 5.5}),
    json.dumps(BASE | {"ts": -5}),
    json.dumps(BASE | {"ts": True}),
    json.dumps(BASE | {"ts": "5"}),
    json.dumps(BASE | {"ts": 50_000_000_000_000_000_000}),
    json.dumps(BASE | {"user_id": ""}),
    json.dumps(BASE | {"event_id": 5}),
    json.dumps({k: v for k, v in BASE.items() if k != "user_id"}),
    json.dumps(BASE | {"properties": {"a": 1}}),
    json.dumps(BASE | {"properties": None}),
    json.dumps(BASE | {"properties": [1]}),
    json.dumps(BASE | {"properties": [{"a": 1}]}),
    json.dumps(BASE | {"device": 7}),
    json.dumps(BASE | {"device": "ios", "session_id": None, "extra": [1]}),
    json.dumps(BASE | {"event_type": ["page_view"]}),
    "not json",
    "[1, 2]",
    json.dumps(BASE)[:-1],
]


DECODE_CASES = CASES + [
    json.dumps(BASE | {"properties": {"n": 1.10, "big": 12345678901234567890, "e": 1e22}}),
    json.dumps(BASE | {"properties": {"s": "caf\u00e9 \u2603", "nested": {"a": [1, None, True]}}}),
    json.dumps(BASE | {"device": None, "ts": -1763805645123, "user_id": 'u "q"'}),
    json.dumps(BASE | {"properties": {}}),
    json.dumps(BASE | {"ts": [5]}),
    json.dumps(BASE | {"event_id": ["e"]}),
    json.dumps(BASE | {"user_id": ["u", "v"]}),
    json.dumps(BASE | {"device": ["ios"]}),
    json.dumps(BASE | {"device": [None]}),
    json.dumps(BASE | {"session_id": [None]}),
    json.dumps(BASE | {"properties": [None]}),
    json.dumps(BASE | {"properties": None, "device": None, "session_id": "s"}),
    '{"event_id": "e", "user_id": "u", "user_id": "v", "event_type": "x", "ts": 5}',
    "\ufeff" + json.dumps(BASE),
    json.dumps(BASE) + " x",
    " \n" + json.dumps(BASE),
    json.dumps(BASE | {"properties": {"s": "\ud800"}}),
    json.dumps(BASE | {"ts": 5.0}),
    '{"event_id": "e", "user_id": "u", "event_type": "x", "ts": 5, '
    '"properties": {"z": -0.0, "k": [1, {"a": "}"}], "t": 1.50}}',
]


def _sized(size: int) -> str:
    """A valid record of exactly `size` bytes (padding in a property)."""
    shell = len(json.dumps(BASE | {"properties": {"pad": ""}}))
    return json.dumps(BASE | {"properties": {"pad": "p" * (size - shell)}})


# Guard rails (udfs/decode.py): the JVM must vouch for a record inside them exactly as the
# decoder reads it, and never for one outside (Python then dead-letters it with the reason).
NOW_MS = time.time_ns() // 1_000_000
HOUR_MS = 3_600_000
GUARD_RAIL_VALID = [
    json.dumps(BASE | {"ts": 0}),
    json.dumps(BASE | {"ts": NOW_MS + HOUR_MS // 2}),
    json.dumps(BASE | {"event_id": "x" * 512, "user_id": "y" * 512, "event_type": "z" * 512}),
    json.dumps(BASE | {"user_id": "\u2603" * 170 + "ab"}, ensure_ascii=False),  # 512 bytes
    json.dumps(BASE | {"event_id": "\U0001f600" * 128}, ensure_ascii=False),  # 512 bytes
    json.dumps(BASE | {"event_type": "\u00e9" * 256}, ensure_ascii=False),  # 512 bytes
    _sized(1 << 20),
]
GUARD_RAIL_INVALID = [
    json.dumps(BASE | {"ts": 253_402_300_799_999}),  # the year 9999
    json.dumps(BASE | {"ts": 253_402_300_800_000}),
    json.dumps(BASE | {"ts": "9999-12-31T23:59:59.999Z"}),
    json.dumps(BASE | {"ts": NOW_MS + 2 * HOUR_MS}),
    json.dumps(BASE | {"ts": -1}),
    json.dumps(BASE | {"event_id": "x" * 513}),
    json.dumps(BASE | {"user_id": "y" * 513}),
    json.dumps(BASE | {"event_type": "z" * 513}),
    json.dumps(BASE | {"event_id": ""}),
    json.dumps(BASE | {"event_type": ""}),
    json.dumps(BASE | {"user_id": "\u2603" * 170 + "abc"}, ensure_ascii=False),  # 513 bytes
    json.dumps(BASE | {"event_id": "\U0001f600" * 129}, ensure_ascii=False),  # 516 bytes
    json.dumps(BASE | {"event_type": "\u00e9" * 257}, ensure_ascii=False),  # 514 bytes
    json.dumps(BASE | {"user_id": "\u2603" * 171}),  # escaped: 513 bytes once decoded
    _sized((1 << 20) + 1),
]
DECODE_CASES += GUARD_RAIL_VALID + GUARD_RAIL_INVALID


def _payloads(read_types):
    """Every case through the keyed-records query, as the job runs it: {offset: (key, payload)}."""
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import DataTypes, StreamTableEnvironment

    from jobs import flink_compat
    from jobs.connectors.kafka_source import keyed_payload_type
    from jobs.connectors.prefilter import DECODE_CLASS, DECODE_FUNCTION, keyed_records_query
    from jobs.detection.environment import UDF_JAR

    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(1)
    env.add_jars(UDF_JAR.as_uri())
    t_env = StreamTableEnvironment.create(env)
    t_env.create_java_temporary_system_function(DECODE_FUNCTION, DECODE_CLASS)
    rows = t_env.from_elements(
        [(bytearray(r.encode()), "t", 0, i) for i, r in enumerate(DECODE_CASES)],
        DataTypes.ROW(
            [
                DataTypes.FIELD("value", DataTypes.BYTES()),
                DataTypes.FIELD("topic", DataTypes.STRING()),
                DataTypes.FIELD("partition", DataTypes.INT()),
                DataTypes.FIELD("offset", DataTypes.BIGINT()),
            ]
        ),
    )
    t_env.create_temporary_view("events_raw", rows)
    stream = t_env.to_data_stream(t_env.sql_query(keyed_records_query(read_types)))
    # As kafka_keyed_records types it (Python gets the same Row objects).
    flink_compat.set_output_type(stream, keyed_payload_type())
    with stream.execute_and_collect() as result:
        return {row[1][4]: row for row in result}


@pytest.fixture(scope="module")
def every_record():
    return _payloads(None)


@pytest.fixture(scope="module")
def read_only():
    return _payloads(READ)


def test_decoding_in_the_jvm_equals_the_decoder_for_every_record_it_vouches_for(every_record):
    """What the detect operator builds from the JVM's fields equals what the decoder makes of the
    raw record; an invalid record is never vouched for; the key is the decoder's user_id."""
    from jobs.operators import DetectMoments
    from udfs.model import EngineEvent

    assert len(every_record) == len(DECODE_CASES)
    vouched = 0
    for offset, (key, payload) in every_record.items():
        record = DECODE_CASES[offset]
        try:
            event = decode_event(record)
        except InvalidEvent:
            assert not payload[5], f"vouched for an invalid record: {record}"
            continue
        assert key == event.user_id, record
        if payload[5]:
            vouched += 1
            assert DetectMoments._decode(payload) == EngineEvent.from_event(event), record
    assert vouched >= 10


def test_guard_rails_in_the_jvm_equal_the_decoder(every_record):
    """Inside the guard rails, at their limits (multi-byte UTF-8 at 512 bytes, exactly 1 MiB),
    the JVM vouches for the record; outside, it does not and the decoder names the breach."""
    start = DECODE_CASES.index(GUARD_RAIL_VALID[0])
    for offset in range(start, len(DECODE_CASES)):
        record = DECODE_CASES[offset]
        payload = every_record[offset][1]
        if record in GUARD_RAIL_VALID:
            assert payload[5], f"not vouched for: {record[:120]}"
        else:
            assert not payload[5], f"vouched for a poisoned record: {record[:120]}"
            with pytest.raises(InvalidEvent):
                decode_event(record)


@pytest.mark.parametrize("index", range(len(DECODE_CASES)))
def test_drops_only_valid_unread_events(read_only, index):
    record = DECODE_CASES[index]
    kept = index in read_only
    try:
        event = decode_event(record)
    except InvalidEvent:
        assert kept, f"an invalid record would miss the DLQ: {record}"
        return
    if event.event_type in READ:
        assert kept, f"a record a rule reads was dropped: {record}"


def test_the_common_case_is_dropped(read_only):
    assert 0 not in read_only and 11 not in read_only and 16 not in read_only
    assert 1 in read_only  # add_to_cart
