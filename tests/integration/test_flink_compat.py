"""Each private PyFlink call of jobs/flink_compat.py on a small local job: the records Kafka mode
reads (through the JVM decoder and prefilter query), retyped, keyed in the JVM through the JVM
activity filter, and read by a Python keyed operator. A PyFlink upgrade that breaks one fails here.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

pytestmark = pytest.mark.integration

RECORDS = [
    {"user_id": user, "event_id": f"e{i}", "event_type": kind, "ts": 1_000 * i}
    for i, (user, kind) in enumerate(
        [("u1", "add_to_cart"), ("u2", "view"), ("u1", "view"), ("u2", "add_to_cart")], start=1
    )
]


def test_every_private_call_works_on_a_local_environment():
    from pyflink.common import Types
    from pyflink.datastream import KeyedProcessFunction, StreamExecutionEnvironment
    from pyflink.table import DataTypes, StreamTableEnvironment

    from jobs import flink_compat
    from jobs.connectors.kafka_source import (
        activity_filter,
        keyed_payload_type,
        register_decode_function,
    )
    from jobs.connectors.prefilter import keyed_records_query
    from jobs.detection.environment import UDF_JAR
    from schemas.rules import load_rules
    from udfs.engine import Engine

    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(1)
    flink_compat.add_jars_to_client([UDF_JAR.as_uri()])
    j_conf = flink_compat.environment_configuration(env)
    j_conf.setString("pipeline.jars", str([UDF_JAR.as_uri()]))
    assert j_conf.getString("pipeline.jars", None)
    t_env = StreamTableEnvironment.create(env)
    register_decode_function(t_env)
    rows = t_env.from_elements(
        [(bytearray(json.dumps(r).encode()), "t", 0, i) for i, r in enumerate(RECORDS)],
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
    row_type = keyed_payload_type()
    flink_compat.set_output_type(stream, row_type)

    engine = Engine(load_rules("examples/rules.yaml"))
    config = SimpleNamespace(idle_fire_after_ms=None, state_ttl_ms=86_400_000)
    collapse = activity_filter(engine, config, row_type)  # jvm_object + java_string_array
    assert collapse is not None, "examples/rules.yaml has a silence rule"
    keyed = flink_compat.key_by_first_field(stream, row_type, (collapse, "activity"))

    class KeyAndUser(KeyedProcessFunction):
        def process_element(self, value, ctx):
            yield f"{ctx.get_current_key()}:{value[0]}"  # value: the payload Row

    with keyed.process(KeyAndUser(), output_type=Types.STRING()).execute_and_collect() as out:
        seen = list(out)
    assert seen and all(key == user for key, user in (s.split(":") for s in seen))
    assert {s.split(":")[0] for s in seen} == {"u1", "u2"}
