"""Where output rows go: Kafka topics (actions keyed by user_id, dead letters, late events) or JSONL
files written by the client that runs a file-mode job.

Every output is a Row(kind, key, value) (see jobs.operators); one Kafka table sink writes them all,
choosing the topic per row, so one delivery guarantee and one transactional producer cover the
three topics.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from pyflink.table import StreamTableEnvironment

from jobs.config import DetectConfig
from jobs.operators import KIND_ACTION, KIND_DLQ, KIND_LATE
from jobs.sources import sql_string

# The broker's default transaction.max.timeout.ms is 15 min; Flink's default (1 h) is refused.
TRANSACTION_TIMEOUT_MS = 600_000


def kafka_sink_ddl(config: DetectConfig, table: str = "moments_out") -> str:
    options = {
        "connector": "kafka",
        # Several topics: each row's `topic` metadata column picks one of them.
        "topic": ";".join((config.actions_topic, config.late_topic, config.dlq_topic)),
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


def add_kafka_sink(t_env: StreamTableEnvironment, rows, config: DetectConfig):
    """A statement set writing every output row to its topic (attach it before executing)."""
    t_env.execute_sql(kafka_sink_ddl(config))
    t_env.create_temporary_view("moments_rows", t_env.from_data_stream(rows))
    topic = (
        f"CASE kind WHEN {sql_string(KIND_ACTION)} THEN {sql_string(config.actions_topic)} "
        f"WHEN {sql_string(KIND_LATE)} THEN {sql_string(config.late_topic)} "
        f"ELSE {sql_string(config.dlq_topic)} END"
    )
    statements = t_env.create_statement_set()
    statements.add_insert_sql(
        f"INSERT INTO moments_out SELECT {topic}, `key`, `value` FROM moments_rows"
    )
    return statements


class FileOutputs:
    """Writes collected rows to the actions / late / dead-letter files, counting each kind."""

    def __init__(self, config: DetectConfig):
        self.paths: dict[str, Path | None] = {
            KIND_ACTION: config.out_path,
            KIND_LATE: config.late_out_path,
            KIND_DLQ: config.dlq_out_path,
        }
        self.counts: Counter[str] = Counter()

    def write_all(self, rows) -> Counter[str]:
        files = {
            kind: open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed below
            for kind, path in self.paths.items()
            if path is not None
        }
        try:
            for row in rows:
                kind = row[0]
                self.counts[kind] += 1
                out = files.get(kind)
                if out is not None:
                    out.write(row[2])
                    out.write("\n")
        finally:
            for out in files.values():
                out.close()
        return self.counts
