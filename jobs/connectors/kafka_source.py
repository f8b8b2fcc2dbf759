"""The events topic as the detection job reads it: a Kafka table whose rowtime and WATERMARK the
planner pushes into the source (one watermark per partition, their minimum emitted: exactly
max_ts - bound), the prefilter query, and the records keyed by user in the JVM.
"""

from __future__ import annotations

from pyflink.table import StreamTableEnvironment

from jobs import flink_compat
from jobs.connectors import payload
from jobs.connectors.prefilter import (
    DECODE_CLASS,
    DECODE_FUNCTION,
    EVENT_TIME_CLASS,
    EVENT_TIME_FUNCTION,
    keyed_records_query,
    max_future_sql,
)
from jobs.connectors.sql import interval_sql, sql_string
from udfs.decode import DEFAULT_MAX_FUTURE_MS
from udfs.timing import TIMER_GRID_MS

ACTIVITY_FILTER_CLASS = "dev.micromoments.flink.CollapseActivity"  # udfs/jvm
RELEASE_CLASS = "dev.micromoments.flink.ReleaseOnWatermark"
RELEASE_OPERATOR_CLASS = "dev.micromoments.flink.ReleaseOperator"
_STARTUP_MODE = {
    "earliest": "earliest-offset",
    "latest": "latest-offset",
    "committed": "group-offsets",
}


def rowtime_sql(max_future_ms: int | None = DEFAULT_MAX_FUTURE_MS) -> str:
    """The event time of a record for watermarks (never NULL: a NULL rowtime fails the job): its
    `ts` read by moments_event_time (udfs/jvm: integer epoch ms, or RFC 3339 with a zone) when
    the record is valid within the guard rails, else 0. An invalid or poisoned record thus never
    moves its partition's watermark (no valid ts is below 0; the Kafka record timestamp it once
    fell back to moved a backlog's watermark to wall-clock time). Only the watermark comes from
    this: Python decodes `ts` itself."""
    return f"TO_TIMESTAMP_LTZ({EVENT_TIME_FUNCTION}(`value`, {max_future_sql(max_future_ms)}), 3)"


def kafka_events_table_ddl(config, table: str = "events_raw") -> str:
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
    t_env.create_java_temporary_system_function(DECODE_FUNCTION, DECODE_CLASS)
    t_env.create_java_temporary_system_function(EVENT_TIME_FUNCTION, EVENT_TIME_CLASS)


def keyed_payload_type():
    """The type of `kafka_keyed_records`' rows: Row(key, payload), as jobs.connectors.payload."""
    return payload.row_type()


def kafka_keyed_records(t_env: StreamTableEnvironment, config):
    """The events topic keyed by user in the JVM, each record decoded in Flink SQL when it is
    certainly valid (keyed_records_query); with the JVM prefilter on, valid events no rule reads
    are dropped there too, and with a silence rule the JVM activity filter passes on only the
    activity the engine would keep; unless `release_flush_ms` is None, the JVM release
    operator holds each event a rule reads until the watermark passes it. Returns a KeyedStream
    of payload Rows: the keyed Python operator is the only Python one each record meets."""
    from udfs.engine import Engine

    t_env.get_config().set("table.exec.source.idle-timeout", f"{config.source_idle_timeout_ms} ms")
    t_env.execute_sql(kafka_events_table_ddl(config))
    scope = config.rules_scope
    engine = Engine(config.rules if scope is None else scope)
    # Live rules: a version received later may read any type from its T on, so nothing is
    # filtered for the versions known now, unless a scope bounds every version (README "Changing
    # rules while the job runs"); the filters are then the scope's.
    filters = config.jvm_prefilter and (not config.rules_topic or scope is not None)
    read_types = engine.event_types_read() if filters else None
    query = keyed_records_query(read_types, max_future_ms=config.max_future_ms)
    stream = t_env.to_data_stream(t_env.sql_query(query))
    row_type = keyed_payload_type()
    flink_compat.set_output_type(stream, row_type)  # before any use
    collapse = activity_filter(engine, config, row_type) if filters else None
    jvm_process = None if collapse is None else (collapse, "activity")
    release = release_operator(config, row_type)
    jvm_operator = None if release is None else (release, "release")
    return flink_compat.key_by_first_field(stream, row_type, jvm_process, jvm_operator)


def release_flush_ms(config) -> int | None:
    """The JVM release operator's idle flush (udfs/jvm ReleaseOnWatermark; 0: never), or None
    when events are not held in the JVM. A held event reaches Python at the latest 2 x flush +
    one timer step after the watermark's last move, and Python forces an idle user's event time
    idle_fire_after after it: the flush leaves that a margin of three timer steps (records
    crossing tasks may wait for a network buffer's timeout). Off with live rules (their operator
    switches versions at each event's time), in process mode (a release holds many users, whose
    keyed state Python switches to in the JVM's backend) and when the CRM prefetches on arriving
    events (holding them would start each lookup a watermark bound later)."""
    if not (config.kafka_mode and config.jvm_release and config.jvm_prefilter):
        return None
    if config.execution_mode != "thread":  # Python switches the key of its JVM state backend
        return None
    if config.rules_topic or (config.crm.backend != "none" and config.crm.prefetch == "events"):
        return None
    idle = config.idle_fire_after_ms
    if idle is None:
        return 0
    flush = (idle - 4 * TIMER_GRID_MS) // 2
    return flush if flush > 0 else None


def release_operator(config, row_type):
    """The JVM release operator (udfs/jvm ReleaseOperator over ReleaseOnWatermark), or None."""
    flush = release_flush_ms(config)
    if flush is None:
        return None
    function = flink_compat.jvm_object(
        RELEASE_CLASS,
        flush,
        config.state_ttl_ms,
        row_type.get_java_type_info(),
    )
    return flink_compat.jvm_object(RELEASE_OPERATOR_CLASS, function)


def activity_filter(engine, config, row_type):
    """The JVM activity filter (udfs/jvm CollapseActivity) for these rules, or None when they
    have no activity (no silence rule, or a rule that may read any event type). `row_type`: the
    type of the keyed records, in and out."""
    from udfs.activity_filter import filter_settings

    settings = filter_settings(engine, config.idle_fire_after_ms)
    if settings is None:
        return None
    starts = settings.start_types
    return flink_compat.jvm_object(
        ACTIVITY_FILTER_CLASS,
        settings.bucket_ms,
        flink_compat.java_string_array(settings.filtered_types),
        None if starts is None else flink_compat.java_string_array(starts),
        settings.flush_after_ms,
        config.state_ttl_ms,
        settings.bucket_end_spread_ms,
        row_type.get_java_type_info(),
    )
