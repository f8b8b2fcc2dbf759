"""CRM profiles from a snapshot file, read once into memory: JSONL, one `{"user_id": ..., <profile
fields>}` per line, so audience rules can be backtested on history and the file job compared with
the backtest (`--profiles FILE.jsonl`, `CRM_BACKEND=file`).

A profile is exactly what the PostgreSQL backend returns for the same snapshot loaded into a table
(`udfs.crm.snapshot.load_snapshot`): every field of the snapshot, in order of first appearance,
null where a line lacks it (a table row has every column). Values are any JSON value but NaN and
Infinity (not JSON; PostgreSQL's lookup turns them into null) and strings holding U+0000 (no
PostgreSQL text can); the keys of a nested object come in jsonb's order (shorter first, then
bytewise), as the table's jsonb column gives them back.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.errors import UserError
from udfs.crm.base import KEY_COLUMN, LookupResult

#: PostgreSQL truncates longer identifiers (NAMEDATALEN - 1 bytes), so a longer field name would
#: come back from the table under another name.
MAX_FIELD_BYTES = 63


class SnapshotError(UserError, ValueError):
    """A snapshot file the user must fix; the message names the file and the line."""


@dataclass(frozen=True)
class Snapshot:
    """A parsed snapshot. fields: every profile field (no `user_id`), in order of first appearance.
    profiles: user_id -> profile with every field (None where the line lacks it), in file order."""

    path: Path
    fields: tuple[str, ...]
    profiles: dict[str, dict[str, Any]]


class _Invalid(Exception):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        duplicate = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise _Invalid(f"field {duplicate!r} appears twice")
    return document


def _no_constant(name: str) -> Any:
    raise _Invalid(f"{name} is not a JSON value")


def _check_value(field: str, value: Any) -> None:
    if isinstance(value, str):
        if "\x00" in value:
            raise _Invalid(f"field {field!r}: a string holds U+0000, which PostgreSQL refuses")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_value(field, key)
            _check_value(field, item)
    elif isinstance(value, list):
        for item in value:
            _check_value(field, item)


def _jsonb_order(value: Any) -> Any:
    if isinstance(value, dict):
        keys = sorted(value, key=lambda key: (len(key.encode()), key.encode()))
        return {key: _jsonb_order(value[key]) for key in keys}
    if isinstance(value, list):
        return [_jsonb_order(item) for item in value]
    return value


def _check_field_name(name: str) -> None:
    if not name or "\x00" in name:
        raise _Invalid(f"field name {name!r} is empty or holds U+0000")
    if len(name.encode()) > MAX_FIELD_BYTES:
        raise _Invalid(f"field name {name[:20]!r}...: longer than {MAX_FIELD_BYTES} bytes")


def _parse_line(text: str) -> tuple[str, dict[str, Any]]:
    try:
        document = json.loads(
            text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constant
        )
    except json.JSONDecodeError as exc:
        raise _Invalid(f"not JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(document, dict):
        raise _Invalid(f"a JSON object is expected, not {type(document).__name__}")
    user_id = document.pop(KEY_COLUMN, None)
    if not isinstance(user_id, str) or not user_id.strip():
        raise _Invalid(f"{KEY_COLUMN} must be a non-empty string")
    _check_value(KEY_COLUMN, user_id)
    for name, value in document.items():
        _check_field_name(name)
        _check_value(name, value)
        if isinstance(value, dict | list):
            document[name] = _jsonb_order(value)
    return user_id, document


def read_snapshot(path: str | Path) -> Snapshot:
    """Reads and validates the whole file; `SnapshotError` ("FILE:LINE: reason") on the first
    problem: a line that is not a JSON object, a missing, empty or non-string `user_id`, a
    `user_id` seen on an earlier line, a field twice in one object. Blank lines are skipped."""
    path = Path(path)
    rows: dict[str, dict[str, Any]] = {}
    first_line: dict[str, int] = {}
    fields: dict[str, None] = {}
    try:
        lines = path.open("rb")
    except OSError as exc:
        raise SnapshotError(f"{path}: cannot read the profiles file ({exc.strerror})") from None
    with lines:
        for number, raw in enumerate(lines, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise SnapshotError(f"{path}:{number}: not UTF-8") from None
            if not text.strip():
                continue
            try:
                user_id, profile = _parse_line(text)
            except _Invalid as exc:
                raise SnapshotError(f"{path}:{number}: {exc}") from None
            if user_id in rows:
                raise SnapshotError(
                    f"{path}:{number}: {KEY_COLUMN} {user_id!r} already on line "
                    f"{first_line[user_id]}"
                )
            rows[user_id] = profile
            first_line[user_id] = number
            fields.update(dict.fromkeys(profile))
    ordered = tuple(fields)
    profiles = {user_id: {name: row.get(name) for name in ordered} for user_id, row in rows.items()}
    return Snapshot(path, ordered, profiles)


class FileProfiles:
    """A `ProfileLookup` over a snapshot in memory: `ok` with the profile, or `missing`; never
    `unavailable`. Profiles are shared: treat them as read-only."""

    def __init__(self, snapshot: Snapshot):
        self.snapshot = snapshot
        self._profiles = snapshot.profiles

    def __repr__(self) -> str:
        return f"FileProfiles(path={str(self.snapshot.path)!r}, users={len(self._profiles)})"

    def __len__(self) -> int:
        return len(self._profiles)

    @property
    def fields(self) -> tuple[str, ...]:
        return self.snapshot.fields

    def users(self) -> Iterable[str]:
        return self._profiles.keys()

    def lookup(self, user_id: str) -> LookupResult:
        profile = self._profiles.get(user_id)
        if profile is None:
            return LookupResult("missing")
        return LookupResult("ok", profile)

    def lookup_many(
        self, user_ids: list[str], timeout_s: float | None = None
    ) -> dict[str, LookupResult]:
        return {user_id: self.lookup(user_id) for user_id in user_ids}

    async def alookup(self, user_id: str) -> LookupResult:
        return self.lookup(user_id)

    def close(self) -> None:
        """Nothing to release; the snapshot stays shared with other lookups of the process."""

    async def aclose(self) -> None:
        self.close()


_loaded: dict[Path, tuple[tuple[int, int], Snapshot]] = {}
_loading = threading.Lock()


def load_profiles(path: str | Path) -> FileProfiles:
    """The snapshot at `path` as a lookup. Read once per process while the file is unchanged
    (same size and modification time): every operator of a Python worker shares it."""
    resolved = Path(path).resolve()
    with _loading:
        try:
            stat = resolved.stat()
        except OSError as exc:
            raise SnapshotError(f"{path}: cannot read the profiles file ({exc.strerror})") from None
        version = (stat.st_mtime_ns, stat.st_size)
        cached = _loaded.get(resolved)
        if cached is None or cached[0] != version:
            _loaded[resolved] = cached = (version, read_snapshot(path))
    return FileProfiles(cached[1])
