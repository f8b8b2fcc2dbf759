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


def _non_empty_string(field: str) -> str:
    return f"({_wrapped(field)} LIKE '[\"%' AND {_wrapped(field)} <> '[\"\"]')"


def _optional_string(field: str) -> str:
    q = _wrapped(field)
    return f"({q} IS NULL OR {q} = '[null]' OR {q} LIKE '[\"%')"


def certainly_valid_and_unread_sql(read_types: Iterable[str]) -> str:
    """A SQL condition over `v` (the record as STRING): true only for a valid event whose type
    no rule reads."""
    types = ", ".join(sql_string(t) for t in sorted(read_types)) or "''"
    properties = _wrapped("properties")
    # Unwrapped, JSON_QUERY gives an object or an array as it is (the wrapper wraps objects too).
    properties_object = "JSON_QUERY(v, '$.properties') LIKE '{%'"
    return " AND ".join(
        [
            # Most selective first: a record some rule reads stops here (AND short-circuits).
            f"JSON_VALUE(v, '$.event_type') NOT IN ({types})",
            "v IS JSON OBJECT",
            _non_empty_string("event_id"),
            _non_empty_string("user_id"),
            _non_empty_string("event_type"),
            f"REGEXP({_wrapped('ts')}, '^\\[-?[0-9]{{1,18}}\\]$')",
            f"({properties} IS NULL OR {properties} = '[null]' OR {properties_object})",
            _optional_string("device"),
            _optional_string("session_id"),
        ]
    )


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
