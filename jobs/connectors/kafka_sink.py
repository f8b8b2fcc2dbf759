"""The output topics: one Kafka table sink writes every output row (jobs/operators/rows.py),
choosing its topic per row, so one delivery guarantee and one transactional producer cover the
actions, late-events and dead-letter topics (and the suppressed-actions and outcomes topics).
"""

from __future__ import annotations

from pyflink.table import StreamTableEnvironment

from jobs.connectors.sql import sql_string
from jobs.operators.rows import (
    KIND_ACTION,
    KIND_LATE,
    KIND_OUTCOME,
    KIND_RULES_STATUS,
    KIND_SUPPRESSED,
)

# The broker's default transaction.max.timeout.ms is 15 min; Flink's default (1 h) is refused.
TRANSACTION_TIMEOUT_MS = 600_000


def output_topics(config) -> tuple[str, ...]:
    """The topics rows may go to; the suppressed and outcomes topics only with the campaign layer
    or live rules (so a job without either needs no such topics), the rules status topic only
    with live rules."""
    from jobs.detection.topology import uses_campaign_layer

    topics = (config.actions_topic, config.late_topic, config.dlq_topic)
    if config.rules_topic or uses_campaign_layer(config.rules):
        topics += (config.suppressed_topic, config.outcomes_topic)
    if config.rules_topic:
        topics += (config.rules_status_topic,)
    return topics


def kafka_sink_ddl(config, table: str = "moments_out") -> str:
    options = {
        "connector": "kafka",
        # Several topics: each row's `topic` metadata column picks one of them.
        "topic": ";".join(output_topics(config)),
        "properties.bootstrap.servers": config.bootstrap_servers,
        "key.format": "raw",
        "key.fields": "key",
        "value.format": "raw",
        "value.fields-include": "EXCEPT_KEY",
        "sink.partitioner": "default",
    }
    if config.delivery == "exactly-once":
        options["sink.delivery-guarantee"] = "exactly-once"
        options["sink.transactional-id-prefix"] = config.transactional_id_prefix
        options["properties.transaction.timeout.ms"] = str(TRANSACTION_TIMEOUT_MS)
    else:
        options["sink.delivery-guarantee"] = "at-least-once"
    with_clause = ",\n  ".join(f"{sql_string(k)} = {sql_string(v)}" for k, v in options.items())
    return f"""
CREATE TEMPORARY TABLE {table} (
  `topic` STRING METADATA,
  `key` STRING,
  `value` STRING
) WITH (
  {with_clause}
)"""


def add_kafka_sink(t_env: StreamTableEnvironment, rows, config):
    """A statement set writing every output row to its topic (attach it before executing)."""
    t_env.execute_sql(kafka_sink_ddl(config))
    t_env.create_temporary_view("moments_rows", t_env.from_data_stream(rows))
    topic = (
        f"CASE kind WHEN {sql_string(KIND_ACTION)} THEN {sql_string(config.actions_topic)} "
        f"WHEN {sql_string(KIND_LATE)} THEN {sql_string(config.late_topic)} "
        f"WHEN {sql_string(KIND_SUPPRESSED)} THEN {sql_string(config.suppressed_topic)} "
        f"WHEN {sql_string(KIND_OUTCOME)} THEN {sql_string(config.outcomes_topic)} "
        f"WHEN {sql_string(KIND_RULES_STATUS)} THEN {sql_string(config.rules_status_topic)} "
        f"ELSE {sql_string(config.dlq_topic)} END"
    )
    statements = t_env.create_statement_set()
    statements.add_insert_sql(
        f"INSERT INTO moments_out SELECT {topic}, `key`, `value` FROM moments_rows"
    )
    return statements
