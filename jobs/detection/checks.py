"""Checks of single `moments run` options (jobs/detection/config.py applies them as validators):
each returns the normalised value or raises ValueError with what to fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jobs.connectors.brokers import check_bootstrap


def existing_files(value: Any) -> Any:
    """A path (or a tuple of them) to an existing file, made absolute."""
    paths = value if isinstance(value, tuple) else (value,)
    for path in paths:
        if path is not None and not path.is_file():
            raise ValueError(f"{path}: no such file")
    resolved = tuple(None if p is None else p.resolve() for p in paths)
    return resolved if isinstance(value, tuple) else resolved[0]


def writable(path: Path | None) -> Path | None:
    """An output file whose directory exists, made absolute."""
    if path is None:
        return None
    if not path.resolve().parent.is_dir():
        raise ValueError(f"{path}: directory {path.resolve().parent} does not exist")
    return path.resolve()


def checkpoint_uri(value: str | None) -> str | None:
    """A checkpoint URI; a local directory is created and given as file://."""
    if value is None or "://" in value:
        return value
    path = Path(value).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path.as_uri()


def reachable(value: str | None) -> str | None:
    return None if value is None else check_bootstrap(value)


def key_values(options: tuple[str, ...]) -> tuple[str, ...]:
    for item in options:
        key, sep, _ = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{item!r}: expected KEY=VALUE")
    return options
