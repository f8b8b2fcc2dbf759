"""SQL text the connectors' statements share: quoted string literals and interval literals."""

from __future__ import annotations


def sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def interval_sql(ms: int) -> str:
    """A day-time interval literal of `ms` milliseconds (Flink SQL has no MILLISECOND unit)."""
    seconds = f"{ms // 1000}.{ms % 1000:03d}"
    return f"INTERVAL '{seconds}' SECOND({max(len(str(ms // 1000)), 1)}, 3)"
