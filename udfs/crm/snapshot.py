"""A CRM snapshot file (udfs/crm/file.py) loaded into a PostgreSQL table, so the Kafka job against
PostgreSQL and the backtest with `--profiles` read the same profiles.

The table is made from the snapshot: `user_id text PRIMARY KEY` and a column per field, in order of
first appearance, typed so each value comes back as it was written: text, boolean, bigint or double
precision when every value of the field is of that JSON type (or null), else jsonb (mixed types,
objects, arrays, integers past 64 bits).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from udfs.crm.file import Snapshot, SnapshotError, read_snapshot

_INT64 = range(-(2**63), 2**63)


def column_type(values: list[Any]) -> str:
    """The SQL type of a field whose non-null values are `values`."""
    if all(isinstance(value, str) for value in values):
        return "text"  # also a field that is always null
    if all(isinstance(value, bool) for value in values):
        return "boolean"
    if all(isinstance(value, int) and not isinstance(value, bool) for value in values):
        return "bigint" if all(value in _INT64 for value in values) else "jsonb"
    if all(isinstance(value, float) for value in values):
        return "double precision"
    return "jsonb"


def column_types(snapshot: Snapshot) -> dict[str, str]:
    values: dict[str, list[Any]] = {name: [] for name in snapshot.fields}
    for profile in snapshot.profiles.values():
        for name, value in profile.items():
            if value is not None:
                values[name].append(value)
    return {name: column_type(found) for name, found in values.items()}


def _exact_in_jsonb(value: Any) -> bool:
    """jsonb keeps numbers as `numeric` and prints an integral one without a decimal point:
    a float such as 1e+16 would come back as an int."""
    if isinstance(value, float):
        return not (value.is_integer() and "e" in repr(value))
    if isinstance(value, dict):
        return all(_exact_in_jsonb(item) for item in value.values())
    if isinstance(value, list):
        return all(_exact_in_jsonb(item) for item in value)
    return True


def load_snapshot(dsn: str, table: str, path: str | Path, *, replace: bool = False) -> int:
    """Creates `table` (`name` or `schema.name`) holding exactly the snapshot at `path`, in one
    transaction; returns the number of profiles. An existing table is an error unless `replace`
    (then it is dropped and made again: readers see the old rows or the new ones, nothing
    between). `SnapshotError` for a bad file or table; psycopg errors for the database."""
    import psycopg
    from psycopg import sql
    from psycopg.types.json import Jsonb

    from udfs.crm.base import KEY_COLUMN
    from udfs.crm.postgres import table_identifier

    try:
        identifier = table_identifier(table)
    except ValueError as exc:
        raise SnapshotError(str(exc)) from None
    snapshot = read_snapshot(path)
    types = column_types(snapshot)
    for name, kind in types.items():
        if kind == "jsonb" and not all(
            _exact_in_jsonb(profile[name]) for profile in snapshot.profiles.values()
        ):
            raise SnapshotError(
                f"{path}: field {name!r} mixes types and holds a float such as 1e+16 that "
                "PostgreSQL's jsonb would give back as an integer; write it as a plain number"
            )
    columns = [
        sql.SQL("{} text PRIMARY KEY").format(sql.Identifier(KEY_COLUMN)),
        *(
            sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(kind))
            for name, kind in types.items()
        ),
    ]
    names = [sql.Identifier(KEY_COLUMN), *(sql.Identifier(name) for name in types)]
    as_jsonb = [types[name] == "jsonb" for name in snapshot.fields]
    with psycopg.connect(dsn, application_name="micro-moments-crm-load") as conn:
        exists = conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL", (identifier.as_string(conn),)
        ).fetchone()[0]
        if exists and not replace:
            raise SnapshotError(
                f"table {table} already exists: load into a new table, or replace it "
                "(--replace drops it and its rows)"
            )
        if exists:
            conn.execute(sql.SQL("DROP TABLE {}").format(identifier))
        conn.execute(
            sql.SQL("CREATE TABLE {} ({})").format(identifier, sql.SQL(", ").join(columns))
        )
        with conn.cursor().copy(
            sql.SQL("COPY {} ({}) FROM STDIN").format(identifier, sql.SQL(", ").join(names))
        ) as copy:
            for user_id, profile in snapshot.profiles.items():
                copy.write_row(
                    [
                        user_id,
                        *(
                            Jsonb(value) if jsonb and value is not None else value
                            for value, jsonb in zip(profile.values(), as_jsonb, strict=True)
                        ),
                    ]
                )
    return len(snapshot.profiles)
