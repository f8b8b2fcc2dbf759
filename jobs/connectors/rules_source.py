"""The rules topic as the detection job reads it (`--rules-topic`): every record from the earliest
offset, key and value as text, broadcast to every subtask of the detect operator, whose broadcast
state keeps the versions received (jobs/operators/detect_versions.py).

The rules input must neither hold event time back nor carry it on (the detect operator's
watermark is the minimum of its active inputs'). So it has no watermark of its own: it is marked
idle a moment after each record (RULES_IDLE_MS), and an idle input does not count. It must not
carry a watermark at the end of time either: while the events source is idle (none of its
partitions has a record for --source-idle-timeout), that would become the operator's watermark
and the events after the pause would all be late.
"""

from __future__ import annotations

from jobs import flink_compat
from jobs.connectors.sql import sql_string

# How soon after a rules record the input is idle again (checked every auto-watermark interval;
# until then, and at start, it holds the operator's watermark where it is).
RULES_IDLE_MS = 1


def rules_table_ddl(config, table: str = "rules_raw") -> str:
    options = {
        "connector": "kafka",
        "topic": config.rules_topic,
        "properties.bootstrap.servers": config.bootstrap_servers,
        "properties.group.id": f"{config.group_id}-rules",
        "properties.isolation.level": "read_committed",
        "scan.startup.mode": "earliest-offset",
        "key.format": "raw",
        "key.fields": "record_key",
        "value.format": "raw",
        "value.fields-include": "EXCEPT_KEY",
    }
    with_clause = ",\n  ".join(f"{sql_string(k)} = {sql_string(v)}" for k, v in options.items())
    return f"""
CREATE TEMPORARY TABLE {table} (
  `record_key` STRING,
  `record_value` STRING,
  `partition` INT METADATA VIRTUAL,
  `offset` BIGINT METADATA VIRTUAL
) WITH (
  {with_clause}
)"""


def rules_row_type():
    from pyflink.common import Types

    return Types.ROW_NAMED(
        ["record_key", "record_value", "partition", "offset"],
        [Types.STRING(), Types.STRING(), Types.INT(), Types.LONG()],
    )


def rules_broadcast(t_env, config):
    """The rules topic's records as Row(record_key, record_value, partition, offset), broadcast
    with the detect operator's state descriptor."""
    from pyflink.common import Duration, WatermarkStrategy

    from jobs.operators.detect_versions import RULES_STATE

    t_env.execute_sql(rules_table_ddl(config))
    query = "SELECT `record_key`, `record_value`, `partition`, `offset` FROM rules_raw"
    stream = t_env.to_data_stream(t_env.sql_query(query))
    flink_compat.set_output_type(stream, rules_row_type())
    idle = WatermarkStrategy.no_watermarks().with_idleness(Duration.of_millis(RULES_IDLE_MS))
    stream = stream.assign_timestamps_and_watermarks(idle).name("rules-idle").uid("rules-idle")
    return stream.broadcast(RULES_STATE)
