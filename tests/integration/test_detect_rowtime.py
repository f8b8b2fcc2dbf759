"""The Kafka source's rowtime (jobs.sources.rowtime_sql, udfs/jvm's moments_event_time): the
event's own ts as the Python decoder reads it, else the Kafka record timestamp; never NULL (a NULL
rowtime fails the job)."""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from jobs.sources import rowtime_sql
from schemas.event import parse_ts_ms

pytestmark = pytest.mark.integration
KAFKA_TS = 42
CASES = [
    ({"ts": 1_763_805_600_123}, 1_763_805_600_123),
    ({"ts": -5}, -5),
    ({"ts": "2025-01-01T00:00:00Z"}, parse_ts_ms("2025-01-01T00:00:00Z")),
    ({"ts": "2025-01-01T00:00:00.5Z"}, parse_ts_ms("2025-01-01T00:00:00.5Z")),
    ({"ts": "2025-01-01T00:00:00.123456Z"}, parse_ts_ms("2025-01-01T00:00:00.123456Z")),
    ({"ts": "2025-01-01T02:00:00+02:00"}, parse_ts_ms("2025-01-01T02:00:00+02:00")),
    ({"ts": "2025-01-01 02:00:00.9999-01:30"}, parse_ts_ms("2025-01-01 02:00:00.9999-01:30")),
    ({"ts": "1969-12-31T23:59:59.9995z"}, parse_ts_ms("1969-12-31T23:59:59.9995z")),
    ({"ts": "2025-01-01T00:00:00"}, KAFKA_TS),  # no zone: invalid
    ({"ts": "yesterday"}, KAFKA_TS),
    ({"ts": True}, KAFKA_TS),
    ({"ts": 50_000_000_000_000_000_000}, KAFKA_TS),
    ({"ts": 900_000_000_000_000_000}, KAFKA_TS),
    ({}, KAFKA_TS),
    ("not json", KAFKA_TS),
]


def epoch_ms(text: str, zone: str) -> int:
    """A TIMESTAMP_LTZ printed in the session zone (`2025-01-01 00:00:00.123`) as epoch ms."""
    local = datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=ZoneInfo(zone))
    return round(local.timestamp() * 1000)


@pytest.mark.parametrize("zone", ["UTC", "America/New_York"])
def test_rowtime_is_the_event_ts_else_the_kafka_timestamp(zone):
    from pyflink.table import DataTypes, EnvironmentSettings, TableEnvironment

    from jobs.detect import UDF_JAR
    from jobs.sources import register_decode_function

    t_env = TableEnvironment.create(EnvironmentSettings.in_batch_mode())
    t_env.get_config().set("pipeline.jars", UDF_JAR.as_uri())
    register_decode_function(t_env)
    t_env.get_config().set("table.local-time-zone", zone)
    lines = [c if isinstance(c, str) else json.dumps(c) for c, _ in CASES]
    rows = t_env.from_elements(
        list(enumerate(lines)),
        DataTypes.ROW(
            [DataTypes.FIELD("i", DataTypes.INT()), DataTypes.FIELD("v", DataTypes.STRING())]
        ),
    )
    t_env.create_temporary_view("lines", rows)
    t_env.create_temporary_view(
        "records",
        t_env.sql_query(
            "SELECT i, CAST(v AS BYTES) AS `value`, "
            f"TO_TIMESTAMP_LTZ({KAFKA_TS}, 3) AS `timestamp` FROM lines"
        ),
    )
    query = f"SELECT i, CAST({rowtime_sql()} AS STRING) FROM records"
    with t_env.sql_query(query).execute().collect() as results:
        got = {row[0]: epoch_ms(row[1], zone) for row in results}
    assert [got[i] for i in range(len(CASES))] == [ms for _, ms in CASES]
