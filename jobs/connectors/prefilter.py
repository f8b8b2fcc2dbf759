"""What Python gets from the events topic, decided in the JVM: moments_decode (udfs/jvm) reads each
record once and vouches for it only when it is certainly valid as the Python decoder reads it, so
the dead-letter verdict never changes; vouched-for events of a type no rule reads are dropped.
"""

from __future__ import annotations

from collections.abc import Iterable

from jobs.connectors.payload import sql_row
from jobs.connectors.sql import sql_string
from udfs.decode import DEFAULT_MAX_FUTURE_MS

DECODE_FUNCTION = "moments_decode"
DECODE_CLASS = "dev.micromoments.flink.DecodeEvent"  # udfs/jvm, built by `make setup`
EVENT_TIME_FUNCTION = "moments_event_time"
EVENT_TIME_CLASS = "dev.micromoments.flink.EventTime"


def max_future_sql(max_future_ms: int | None) -> str:
    """The guard rail's future bound as the JVM functions take it: ms, or -1 for none (`off`)."""
    return f"CAST({-1 if max_future_ms is None else int(max_future_ms)} AS BIGINT)"


def keyed_records_query(
    read_types: Iterable[str] | None,
    table: str = "events_raw",
    max_future_ms: int | None = DEFAULT_MAX_FUTURE_MS,
) -> str:
    """The records Python must see as `(key, payload)` rows. `moments_decode` (a Java function,
    udfs/jvm) reads each record once: when it is certainly a valid event (guard rails included,
    `max_future_ms` as in udfs.decode), `decoded` is true and event_id, event_type, ts, device
    and properties (JSON text) are set; else only the raw value and its coordinates are, for
    Python's decoder.

    The key is the record's user_id as read there ('' when it has none): the stream is keyed in
    the JVM on it, so no Python operator runs before the keyed one. With `read_types`, certainly
    valid events of other types are dropped here (only when no rule reads every event).
    """
    where = ""
    if read_types is not None:
        types = ", ".join(sql_string(t) for t in sorted(read_types)) or "''"
        where = f" WHERE NOT (d.decoded AND d.event_type NOT IN ({types}))"
    return (
        f"SELECT d.user_id AS k, {sql_row('d')} AS p "
        # Only the columns used: with `*` the rowtime, which the source already computed for its
        # watermark, was computed again for each record (one more parse in moments_event_time).
        "FROM (SELECT `value`, `topic`, `partition`, `offset`, "
        f"{DECODE_FUNCTION}(`value`, {max_future_sql(max_future_ms)}) AS d FROM {table}){where}"
    )
