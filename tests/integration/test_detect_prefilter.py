"""The JVM prefilter (Flink SQL) skips a record only when Python would accept it as a valid event
of a type no rule reads: it may pass too much to Python, never drop what Python must see."""

from __future__ import annotations

import json

import pytest

from jobs.prefilter import certainly_valid_and_unread_sql, python_records_query
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


@pytest.fixture(scope="module")
def skipped() -> dict[int, bool]:
    from pyflink.table import DataTypes, EnvironmentSettings, TableEnvironment

    t_env = TableEnvironment.create(EnvironmentSettings.in_batch_mode())
    rows = t_env.from_elements(
        list(enumerate(CASES)),
        DataTypes.ROW(
            [DataTypes.FIELD("i", DataTypes.INT()), DataTypes.FIELD("v", DataTypes.STRING())]
        ),
    )
    t_env.create_temporary_view("cases", rows)
    condition = certainly_valid_and_unread_sql(READ)
    with t_env.execute_sql(
        f"SELECT i, COALESCE({condition}, FALSE) FROM cases"
    ).collect() as result:
        return {row[0]: row[1] for row in result}


@pytest.mark.parametrize("index", range(len(CASES)))
def test_skips_only_valid_unread_events(skipped, index):
    record = CASES[index]
    try:
        event = decode_event(record)
    except InvalidEvent:
        assert not skipped[index], f"an invalid record would miss the DLQ: {record}"
        return
    if event.event_type in READ:
        assert not skipped[index], f"a record a rule reads was skipped: {record}"


def test_the_common_case_is_skipped(skipped):
    assert skipped[0] and skipped[11] and skipped[16]


def test_a_silence_rule_disables_the_filter():
    assert "WHERE" not in python_records_query(None)


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
]


def test_sql_decoding_equals_the_decoder_for_every_record_it_vouches_for():
    """Kafka mode decodes certainly-valid records in Flink SQL (jobs.prefilter); what the detect
    operator builds from those fields must equal what the decoder makes of the raw record."""
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import DataTypes, StreamTableEnvironment

    from jobs.operators import DetectMoments
    from jobs.prefilter import keyed_records_query
    from jobs.sources import keyed_payload_type
    from udfs.model import EngineEvent

    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(1)
    t_env = StreamTableEnvironment.create(env)
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
    stream = t_env.to_data_stream(t_env.sql_query(keyed_records_query(None)))
    # As jobs.sources.kafka_keyed_records types it (Python gets the same Row objects).
    stream._j_data_stream.getTransformation().setOutputType(
        keyed_payload_type().get_java_type_info()
    )
    with stream.execute_and_collect() as result:
        payloads = {row[1][4]: row for row in result}
    assert len(payloads) == len(DECODE_CASES)
    vouched = 0
    for offset, (key, payload) in payloads.items():
        record = DECODE_CASES[offset]
        try:
            expected = EngineEvent.from_event(decode_event(record))
        except InvalidEvent:
            assert not payload[5], f"SQL vouched for an invalid record: {record}"
            continue
        assert key == decode_event(record).user_id
        if payload[5]:
            vouched += 1
            assert DetectMoments._decode(payload) == expected, record
    assert vouched >= 8
