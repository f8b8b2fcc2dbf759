"""Where raw events come from: a JSONL file (file mode) or the events topic (Kafka mode).

Both give a stream of raw records for `DecodeEvents`: a line (str) from the file, or
Row(value: bytes, topic, partition, offset) from Kafka. Kafka is read through the Table API's
connector because its metadata columns give the topic/partition/offset the dead-letter records need
(the DataStream KafkaSource in PyFlink only offers value-only deserializers).

Event time in Kafka mode is made here: the table's rowtime and WATERMARK clause are pushed into the
Kafka source (the plan shows `watermark=[...]`, `idletimeout=[...]` on the TableSourceScan), which
keeps one watermark per partition and emits their minimum; the watermark is exactly
max_ts - bound (the backtest's). The prefilter's WHERE and to_data_stream keep it.
"""

from __future__ import annotations

from pyflink.common import WatermarkStrategy
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.datastream.connectors.file_system import FileSource, StreamFormat
from pyflink.table import StreamTableEnvironment

from jobs.config import DetectConfig
from udfs.decode import DEFAULT_MAX_FUTURE_MS

_STARTUP_MODE = {
    "earliest": "earliest-offset",
    "latest": "latest-offset",
    "committed": "group-offsets",
}


def sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def file_lines(env: StreamExecutionEnvironment, config: DetectConfig):
    """The events file, one line per record, in file order (a text file is not split)."""
    source = FileSource.for_record_stream_format(
        StreamFormat.text_line_format(), str(config.events_path)
    ).build()
    return (
        env.from_source(source, WatermarkStrategy.no_watermarks(), "events-file")
        .uid("source-events-file")
        .set_parallelism(1)
    )


def rowtime_sql(max_future_ms: int | None = DEFAULT_MAX_FUTURE_MS) -> str:
    """The event time of a record for watermarks (never NULL: a NULL rowtime fails the job): its
    `ts` read by moments_event_time (udfs/jvm: integer epoch ms, or RFC 3339 with a zone) when
    the record is valid within the guard rails, else 0. An invalid or poisoned record thus never
    moves its partition's watermark (no valid ts is below 0; the Kafka record timestamp it once
    fell back to moved a backlog's watermark to wall-clock time). Only the watermark comes from
    this: Python decodes `ts` itself."""
    from jobs.prefilter import EVENT_TIME_FUNCTION, max_future_sql

    return f"TO_TIMESTAMP_LTZ({EVENT_TIME_FUNCTION}(`value`, {max_future_sql(max_future_ms)}), 3)"


def interval_sql(ms: int) -> str:
    """A day-time interval literal of `ms` milliseconds (Flink SQL has no MILLISECOND unit)."""
    seconds = f"{ms // 1000}.{ms % 1000:03d}"
    return f"INTERVAL '{seconds}' SECOND({max(len(str(ms // 1000)), 1)}, 3)"


def kafka_events_table_ddl(config: DetectConfig, table: str = "events_raw") -> str:
    options = {
        "connector": "kafka",
        "topic": config.events_topic,
        "properties.bootstrap.servers": config.bootstrap_servers,
        "properties.group.id": config.group_id,
        "properties.auto.offset.reset": "earliest",
        # Only committed records of transactional producers (our own exactly-once sinks included).
        "properties.isolation.level": "read_committed",
        "scan.startup.mode": _STARTUP_MODE[config.starting_offsets],
        "format": "raw",
    }
    with_clause = ",\n  ".join(f"{sql_string(k)} = {sql_string(v)}" for k, v in options.items())
    return f"""
CREATE TEMPORARY TABLE {table} (
  `value` BYTES,
  `topic` STRING METADATA VIRTUAL,
  `partition` INT METADATA VIRTUAL,
  `offset` BIGINT METADATA VIRTUAL,
  `rt` AS {rowtime_sql(config.max_future_ms)},
  WATERMARK FOR `rt` AS `rt` - {interval_sql(config.max_out_of_orderness_ms)}
) WITH (
  {with_clause}
)"""


def register_decode_function(t_env) -> None:
    """`moments_decode` and `moments_event_time` (udfs/jvm) as temporary system functions.

    Call it right after creating the table environment: registered later in the job's setup, the
    planner failed to match the signature ("No match found for function signature
    moments_decode(<BINARY>)", PyFlink 2.2.1; the cause was not pinned down)."""
    from jobs.prefilter import (
        DECODE_CLASS,
        DECODE_FUNCTION,
        EVENT_TIME_CLASS,
        EVENT_TIME_FUNCTION,
    )

    t_env.create_java_temporary_system_function(DECODE_FUNCTION, DECODE_CLASS)
    t_env.create_java_temporary_system_function(EVENT_TIME_FUNCTION, EVENT_TIME_CLASS)


def keyed_payload_type():
    """The Python type of `kafka_keyed_records`' rows: Row(key, payload), the payload's fields as
    jobs.prefilter.keyed_records_query selects them."""
    from pyflink.common import Types

    payload = Types.ROW(
        [
            Types.STRING(),  # user_id (the key)
            Types.PRIMITIVE_ARRAY(Types.BYTE()),  # value
            Types.STRING(),  # topic
            Types.INT(),  # partition
            Types.LONG(),  # offset
            Types.BOOLEAN(),  # decoded in SQL
            Types.STRING(),  # event_id
            Types.STRING(),  # event_type
            Types.LONG(),  # ts
            Types.STRING(),  # device
            Types.STRING(),  # properties (JSON text)
        ]
    )
    return Types.ROW([Types.STRING(), payload])


def kafka_keyed_records(t_env: StreamTableEnvironment, config: DetectConfig):
    """The events topic keyed by user in the JVM, each record decoded in Flink SQL when it is
    certainly valid (jobs.prefilter.keyed_records_query); with the JVM prefilter on, valid events
    no rule reads are dropped there too. Returns a KeyedStream whose Python functions get the
    payload Row.

    PyFlink's `key_by` would run a Python operator per record to compute the key (and another to
    decode before it); here the JVM keys on the SQL-read user_id, so the keyed Python operator is
    the only one each record meets.
    """
    from pyflink.datastream.data_stream import KeyedStream
    from pyflink.java_gateway import get_gateway

    from jobs.prefilter import keyed_records_query
    from udfs.engine import Engine

    t_env.get_config().set("table.exec.source.idle-timeout", f"{config.source_idle_timeout_ms} ms")
    t_env.execute_sql(kafka_events_table_ddl(config))
    engine = Engine(config.rules)
    read_types = engine.event_types_read() if config.jvm_prefilter else None
    query = keyed_records_query(read_types, max_future_ms=config.max_future_ms)
    stream = t_env.to_data_stream(t_env.sql_query(query))
    row_type = keyed_payload_type()
    # The Table API types the stream as ExternalTypeInfo; PyFlink's keyed operators need the
    # equivalent RowTypeInfo (same Row objects, another serializer). Set before any use.
    j_row_type = row_type.get_java_type_info()
    stream._j_data_stream.getTransformation().setOutputType(j_row_type)
    gateway = get_gateway()
    from pyflink.common import Types

    key_type = Types.ROW([Types.STRING()]).get_java_type_info()
    j_keyed = stream._j_data_stream.keyBy(gateway.jvm.KeyByKeySelector(), key_type)
    collapse = activity_filter(engine, config, j_row_type) if config.jvm_prefilter else None
    if collapse is not None:
        j_filtered = (
            j_keyed.process(collapse, j_row_type)
            .name("activity")
            .uid("activity")
            # Its own task (thread): it runs beside the Python operator, not in its turn.
            .disableChaining()
        )
        # Same keys, same subtasks: keyed again without another shuffle.
        utils = gateway.jvm.org.apache.flink.streaming.api.datastream.DataStreamUtils
        j_keyed = utils.reinterpretAsKeyedStream(
            j_filtered, gateway.jvm.KeyByKeySelector(), key_type
        )
    return KeyedStream(j_keyed, row_type, stream)


def activity_filter(engine, config: DetectConfig, j_row_type):
    """The JVM activity filter (udfs/jvm CollapseActivity) for these rules, or None when they
    have no activity (no silence rule, or a rule that may read any event type). `j_row_type`:
    the Java type of the keyed records (keyed_payload_type), in and out."""
    from pyflink.java_gateway import get_gateway

    from udfs.activity_filter import filter_settings

    settings = filter_settings(engine, config.idle_fire_after_ms)
    if settings is None:
        return None
    gateway = get_gateway()

    def string_array(values):
        array = gateway.new_array(gateway.jvm.java.lang.String, len(values))
        for i, value in enumerate(sorted(values)):
            array[i] = value
        return array

    starts = settings.start_types
    return gateway.jvm.dev.micromoments.flink.CollapseActivity(
        settings.bucket_ms,
        string_array(settings.filtered_types),
        None if starts is None else string_array(starts),
        settings.flush_after_ms,
        config.state_ttl_ms,
        settings.bucket_end_spread_ms,
        j_row_type,
    )
