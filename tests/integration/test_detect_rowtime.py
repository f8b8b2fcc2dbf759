"""The Kafka source's rowtime (jobs/connectors/kafka_source.py rowtime_sql, udfs/jvm's
moments_event_time): the event's own ts as the Python decoder reads it when the record is valid
within the guard rails, else 0, the epoch, below every valid ts, so that an invalid or poisoned
record never moves its partition's watermark; never NULL (a NULL rowtime fails the job)."""

from __future__ import annotations

import json
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from jobs.connectors.kafka_source import rowtime_sql
from schemas.event import parse_ts_ms

pytestmark = pytest.mark.integration
NOW_MS = time.time_ns() // 1_000_000
HOUR_MS = 3_600_000
YEAR_9999 = 253_402_300_799_999
BASE = {"event_id": "e", "user_id": "u", "event_type": "t"}
# (record, rowtime with --max-future 1h, rowtime with --max-future off)
CASES = [
    ({"ts": 1_763_805_600_123}, 1_763_805_600_123, 1_763_805_600_123),
    ({"ts": 0}, 0, 0),
    ({"ts": "2025-01-01T00:00:00Z"}, parse_ts_ms("2025-01-01T00:00:00Z"), None),
    ({"ts": "2025-01-01T00:00:00.5Z"}, parse_ts_ms("2025-01-01T00:00:00.5Z"), None),
    ({"ts": "2025-01-01T00:00:00.123456Z"}, parse_ts_ms("2025-01-01T00:00:00.123456Z"), None),
    ({"ts": "2025-01-01T02:00:00+02:00"}, parse_ts_ms("2025-01-01T02:00:00+02:00"), None),
    ({"ts": "2025-01-01 02:00:00.9999-01:30"}, parse_ts_ms("2025-01-01 02:00:00.9999-01:30"), None),
    ({"ts": NOW_MS + HOUR_MS // 2}, NOW_MS + HOUR_MS // 2, None),
    # Poisoned: far in the future (moved only by `off`), before the epoch, past the year 9999.
    ({"ts": NOW_MS + 2 * HOUR_MS}, 0, NOW_MS + 2 * HOUR_MS),
    ({"ts": YEAR_9999}, 0, YEAR_9999),
    ({"ts": "9999-12-31T23:59:59.999Z"}, 0, YEAR_9999),
    ({"ts": YEAR_9999 + 1}, 0, 0),
    ({"ts": -5}, 0, 0),
    ({"ts": "1969-12-31T23:59:59.9995z"}, 0, 0),
    # Invalid records, with a plausible ts or none.
    ({"ts": 5, "event_id": "x" * 513}, 0, 0),
    ({"ts": 5, "user_id": ""}, 0, 0),
    ({"ts": 5, "properties": {"pad": "p" * (1 << 20)}}, 0, 0),
    ({"ts": 5, "event_type": None}, 0, 0),
    ({"ts": "2025-01-01T00:00:00"}, 0, 0),  # no zone
    ({"ts": "yesterday"}, 0, 0),
    ({"ts": True}, 0, 0),
    ({"ts": 50_000_000_000_000_000_000}, 0, 0),
    ({"ts": 900_000_000_000_000_000}, 0, 0),
    ({}, 0, 0),
    ('{"event_id": "e", "user_id": "u", "event_type": "t", "ts": 5', 0, 0),  # truncated
    ("not json", 0, 0),
]


def epoch_ms(text: str, zone: str) -> int:
    """A TIMESTAMP_LTZ printed in the session zone (`2025-01-01 00:00:00.123`) as epoch ms."""
    local = datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=ZoneInfo(zone))
    return round(local.timestamp() * 1000)


@pytest.mark.parametrize(
    ("zone", "max_future_ms"),
    [("UTC", HOUR_MS), ("America/New_York", HOUR_MS), ("UTC", None)],
    ids=["utc", "new-york", "max-future-off"],
)
def test_rowtime_is_the_valid_event_ts_else_the_epoch(zone, max_future_ms):
    from pyflink.table import DataTypes, EnvironmentSettings, TableEnvironment

    from jobs.connectors.kafka_source import register_decode_function
    from jobs.detection.environment import UDF_JAR

    t_env = TableEnvironment.create(EnvironmentSettings.in_batch_mode())
    t_env.get_config().set("pipeline.jars", UDF_JAR.as_uri())
    register_decode_function(t_env)
    t_env.get_config().set("table.local-time-zone", zone)
    lines = [c if isinstance(c, str) else json.dumps(BASE | c) for c, _, _ in CASES]
    rows = t_env.from_elements(
        list(enumerate(lines)),
        DataTypes.ROW(
            [DataTypes.FIELD("i", DataTypes.INT()), DataTypes.FIELD("v", DataTypes.STRING())]
        ),
    )
    t_env.create_temporary_view("lines", rows)
    t_env.create_temporary_view(
        "records",
        t_env.sql_query("SELECT i, CAST(v AS BYTES) AS `value` FROM lines"),
    )
    query = f"SELECT i, CAST({rowtime_sql(max_future_ms)} AS STRING) FROM records"
    with t_env.sql_query(query).execute().collect() as results:
        got = {row[0]: epoch_ms(row[1], zone) for row in results}
    column = 1 if max_future_ms is not None else 2
    expected = [case[column] if case[column] is not None else case[1] for case in CASES]
    assert [got[i] for i in range(len(CASES))] == expected
