"""The rules topic as the detection job reads it (`--rules-topic`): every record from the earliest
offset, key and value as text, broadcast to every subtask of the detect operator, whose broadcast
state keeps the versions received (jobs/operators/detect_versions.py).

Its watermark must never hold event time back (the detect operator's is the minimum of its two
inputs'): each record's rowtime is the largest TIMESTAMP_LTZ, so once a record was read the input
stays at the end of time, and while it is idle (no record yet, or none for
table.exec.source.idle-timeout) it does not count at all.
"""

from __future__ import annotations

from jobs import flink_compat
from jobs.connectors.sql import sql_string

# 9999-12-31T23:59:59.999Z, the largest TIMESTAMP_LTZ(3): far after any event time.
END_OF_TIME_MS = 253_402_300_799_999


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
  `offset` BIGINT METADATA VIRTUAL,
  `rt` AS TO_TIMESTAMP_LTZ(CAST({END_OF_TIME_MS} AS BIGINT), 3),
  WATERMARK FOR `rt` AS `rt`
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
    from jobs.operators.detect_versions import RULES_STATE

    t_env.execute_sql(rules_table_ddl(config))
    query = "SELECT `record_key`, `record_value`, `partition`, `offset` FROM rules_raw"
    stream = t_env.to_data_stream(t_env.sql_query(query))
    flink_compat.set_output_type(stream, rules_row_type())
    return stream.broadcast(RULES_STATE)
