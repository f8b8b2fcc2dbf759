"""The JVM-only ceiling for bench/run.py: the detection job's Kafka path with no Python in it.

    python bench/ceiling.py --bootstrap-servers B --events-topic T --out-topic O \
        --event-types add_to_cart,login_failed --parallelism 2 --rest-port 8099

One Flink SQL statement on a local MiniCluster: Kafka JSON source (decode, bad records skipped),
keep the event types the rules read, project the fields the engine uses, write JSON to a Kafka
topic keyed by user_id. This is what the machine does per event before any Python runs, so the
detection job's events/s divided by this one's is the share Python leaves of the ceiling.
Runs until killed (the benchmark stops it once the output topic has caught up).
"""

from __future__ import annotations

import argparse
import glob
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def with_clause(options: dict[str, str]) -> str:
    return ",\n  ".join(f"{sql_string(k)} = {sql_string(v)}" for k, v in options.items())


def kafka_source(args) -> dict[str, str]:
    """The events topic as a Flink SQL Kafka table reads it (bad JSON records skipped); `args`:
    bootstrap_servers, events_topic, group_id. Shared with bench/peer.py."""
    return {
        "connector": "kafka",
        "topic": args.events_topic,
        "properties.bootstrap.servers": args.bootstrap_servers,
        "properties.group.id": args.group_id,
        "properties.isolation.level": "read_committed",
        "scan.startup.mode": "earliest-offset",
        "format": "json",
        "json.ignore-parse-errors": "true",
    }


def kafka_sink(args) -> dict[str, str]:
    """A JSON output topic keyed by user_id (`args`: bootstrap_servers, out_topic)."""
    return {
        "connector": "kafka",
        "topic": args.out_topic,
        "properties.bootstrap.servers": args.bootstrap_servers,
        "key.format": "raw",
        "key.fields": "user_id",
        "value.format": "json",
        "value.fields-include": "ALL",
        "sink.delivery-guarantee": "at-least-once",
    }


def table_env(rest_port: int, parallelism: int):
    """A streaming TableEnvironment on a local MiniCluster with the Kafka SQL connector."""
    from pyflink.common import Configuration
    from pyflink.table import EnvironmentSettings, TableEnvironment

    conf = Configuration()
    conf.set_string("rest.port", str(rest_port))
    conf.set_string("parallelism.default", str(parallelism))
    jars = sorted(glob.glob(str(ROOT / ".cache/jars/flink/flink-sql-connector-kafka-*.jar")))
    conf.set_string("pipeline.jars", ";".join(Path(j).as_uri() for j in jars))
    return TableEnvironment.create(
        EnvironmentSettings.new_instance().in_streaming_mode().with_configuration(conf).build()
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--events-topic", required=True)
    parser.add_argument("--out-topic", required=True)
    parser.add_argument("--event-types", required=True, help="comma-separated types to keep")
    parser.add_argument("--group-id", default="moments-bench-ceiling")
    parser.add_argument("--parallelism", type=int, default=1)
    parser.add_argument("--rest-port", type=int, required=True)
    args = parser.parse_args()

    t_env = table_env(args.rest_port, args.parallelism)
    source, sink = kafka_source(args), kafka_sink(args)
    # `properties` as STRING: Flink's JSON format keeps a nested object as its JSON text.
    t_env.execute_sql(
        f"""CREATE TEMPORARY TABLE events (
  event_id STRING, user_id STRING, event_type STRING, ts BIGINT,
  properties STRING, device STRING, session_id STRING
) WITH (
  {with_clause(source)}
)"""
    )
    t_env.execute_sql(
        f"""CREATE TEMPORARY TABLE projected (
  user_id STRING, event_id STRING, event_type STRING, ts BIGINT, properties STRING
) WITH (
  {with_clause(sink)}
)"""
    )
    types = ", ".join(sql_string(t) for t in args.event_types.split(",") if t)
    result = t_env.execute_sql(
        "INSERT INTO projected SELECT user_id, event_id, event_type, ts, properties FROM events "
        f"WHERE event_id IS NOT NULL AND user_id IS NOT NULL AND ts IS NOT NULL "
        f"AND event_type IN ({types})"
    )
    result.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
