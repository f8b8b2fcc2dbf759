"""The JVM-side filter in front of the Python operators: records no rule reads never reach Python.

A record is skipped in Flink SQL only when it is certainly a valid event (so the dead-letter
verdict cannot change) and its `event_type` is one no rule reads. Anything the SQL cannot judge
cheaply and exactly (RFC 3339 timestamps, odd types, invalid JSON) goes to Python, which decides.

Silence rules read every event of an armed user, so with one in the rule set nothing is skipped
(`Engine.event_types_read()` is None). Collapsing such events per user in SQL would emit them
after the watermark passed them, making them late at the operator; that needs an engine entry
point for "user active until ts" first.
"""

from __future__ import annotations

from collections.abc import Iterable

from jobs.sources import sql_string


def _wrapped(field: str) -> str:
    # A scalar comes back as a one-element JSON array (["x"], [5], [null]); an object as itself;
    # an absent field as NULL. That shows the JSON type, which JSON_VALUE hides.
    return f"JSON_QUERY(v, '$.{field}' WITH CONDITIONAL ARRAY WRAPPER)"


def _scalar(field: str) -> str:
    # An array stays an array under the wrapper (["x"] looks like the string "x" wrapped), but
    # JSON_VALUE of an array or object is NULL: so a wrapped value is a scalar only with this.
    return f"JSON_VALUE(v, '$.{field}') IS NOT NULL"


def _null(field: str) -> str:
    # JSON null: wrapped [null], and not the array [null] (whose unwrapped JSON_QUERY is itself).
    return f"({_wrapped(field)} = '[null]' AND JSON_QUERY(v, '$.{field}') IS NULL)"


def _non_empty_string(field: str) -> str:
    q = _wrapped(field)
    return f"({q} LIKE '[\"%' AND {q} <> '[\"\"]' AND {_scalar(field)})"


def _optional_string(field: str) -> str:
    q = _wrapped(field)
    return f"({q} IS NULL OR {_null(field)} OR ({q} LIKE '[\"%' AND {_scalar(field)}))"


def certainly_valid_sql() -> str:
    """A SQL condition over `v` (the record as STRING): true only for a valid event (one Python's
    decoder accepts) whose fields the SQL below reads exactly as Python would."""
    properties = _wrapped("properties")
    # Unwrapped, JSON_QUERY gives an object or an array as it is (the wrapper wraps objects too).
    properties_object = "JSON_QUERY(v, '$.properties') LIKE '{%'"
    return " AND ".join(
        [
            "v IS JSON OBJECT",
            _non_empty_string("event_id"),
            _non_empty_string("user_id"),
            _non_empty_string("event_type"),
            f"REGEXP({_wrapped('ts')}, '^\\[-?[0-9]{{1,18}}\\]$') AND {_scalar('ts')}",
            f"({properties} IS NULL OR {_null('properties')} OR {properties_object})",
            _optional_string("device"),
            _optional_string("session_id"),
        ]
    )


def _unread_type_sql(read_types: Iterable[str]) -> str:
    types = ", ".join(sql_string(t) for t in sorted(read_types)) or "''"
    return f"JSON_VALUE(v, '$.event_type') NOT IN ({types})"


def certainly_valid_and_unread_sql(read_types: Iterable[str]) -> str:
    """A SQL condition over `v`: true only for a valid event whose type no rule reads."""
    # Most selective first: a record some rule reads stops here (AND short-circuits).
    return f"{_unread_type_sql(read_types)} AND {certainly_valid_sql()}"


def python_records_query(read_types: frozenset[str] | None, table: str = "events_raw") -> str:
    """The records Python must see, with their Kafka coordinates. A plain WHERE over the source
    table: the source's per-partition watermarks pass it (skipped records still move them)."""
    columns = "`value`, `topic`, `partition`, `offset`"
    if read_types is None:
        return f"SELECT {columns} FROM {table}"
    return (
        f"SELECT {columns} FROM (SELECT *, CAST(`value` AS STRING) AS v FROM {table}) "
        f"WHERE NOT COALESCE({certainly_valid_and_unread_sql(read_types)}, FALSE)"
    )


# The fields of a keyed record's payload (see keyed_records_query), by position.
PAYLOAD_FIELDS = (
    "user_id", "value", "topic", "partition", "offset", "decoded",
    "event_id", "event_type", "ts", "device", "properties",
)  # fmt: skip


def keyed_records_query(read_types: frozenset[str] | None, table: str = "events_raw") -> str:
    """The records Python must see as `(key, payload)` rows, decoded in SQL when they are
    certainly valid (`decoded` true: event_id, event_type, ts, device and properties as JSON text
    are set), else with only the raw value and its coordinates for Python's decoder.

    The key is the record's user_id as SQL reads it ('' when it has none): the stream is keyed in
    the JVM on it, so no Python operator runs before the keyed one.
    """
    valid = f"COALESCE({certainly_valid_sql()}, FALSE)"
    fields = [
        ("JSON_VALUE(v, '$.event_id')", "STRING"),
        ("JSON_VALUE(v, '$.event_type')", "STRING"),
        ("TRY_CAST(JSON_VALUE(v, '$.ts') AS BIGINT)", "BIGINT"),
        ("JSON_VALUE(v, '$.device')", "STRING"),
        ("JSON_QUERY(v, '$.properties')", "STRING"),
    ]
    decoded = ", ".join(
        f"CASE WHEN valid THEN {expr} ELSE CAST(NULL AS {kind}) END" for expr, kind in fields
    )
    where = ""
    if read_types is not None:
        where = f" WHERE NOT (valid AND COALESCE({_unread_type_sql(read_types)}, FALSE))"
    return (
        f"SELECT k, ROW(k, `value`, `topic`, `partition`, `offset`, valid, {decoded}) AS p "
        "FROM ("
        "SELECT *, COALESCE(JSON_VALUE(v, '$.user_id'), '') AS k, "
        f"{valid} AS valid FROM (SELECT *, CAST(`value` AS STRING) AS v FROM {table})"
        f"){where}"
    )
