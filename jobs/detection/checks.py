"""Checks of single `moments run` options (jobs/detection/config.py applies them as validators):
each returns the normalised value or raises ValueError with what to fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jobs.connectors.brokers import check_bootstrap
from jobs.options import duration_ms
from schemas.rules import RuleFileError, RuleSet, load_rules


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


def rules_file(value: Any, handler) -> Any:
    """A rules file's path, loaded and validated (a wrap validator: `handler` checks the rules)."""
    if isinstance(value, str | Path):
        try:
            value = load_rules(Path(value))
        except RuleFileError as error:
            raise ValueError(f"{value}: {error}") from None
    # Validated as list[Rule] the rules become a plain list: keep the file's `limits` with them.
    return None if value is None else RuleSet(handler(value), getattr(value, "limits", None))


def idle(value: Any) -> Any:
    """A duration, or None for off / 0 / none."""
    if isinstance(value, str) and value.strip().lower() in ("off", "0", "none"):
        return None
    return duration_ms(value)


def within_scope(rules, scope, rules_topic: str | None) -> None:
    """--rules-scope goes with --rules-topic, and the --rules file (the initial version) fits it."""
    from udfs.rules_scope import RulesScope

    if rules_topic is None:
        raise ValueError("--rules-scope goes with --rules-topic (the versions it bounds)")
    problems = RulesScope(scope).problems(rules)
    if problems:
        raise ValueError("--rules: " + "; ".join(str(problem) for problem in problems))
