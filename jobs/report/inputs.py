"""Where outcome records come from: a JSONL file (`moments backtest --outcomes-out`) or the
outcomes topic, read from its beginning to its end offsets at start (no consumer group, nothing
committed), so a report is a snapshot and always ends."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from pydantic import ValidationError

from jobs.connectors.brokers import check_bootstrap
from schemas.errors import UserError
from schemas.outcome import Outcome


class OutcomeInputError(UserError):
    """An outcomes file or topic the report cannot read."""


def parse_outcome(raw: bytes | str, where: str) -> Outcome:
    """One outcome record (JSON); `where` locates it in the error (`O.jsonl:12`)."""
    try:
        document = json.loads(raw)
    except ValueError as error:
        raise OutcomeInputError(f"{where}: not JSON ({error})") from None
    try:
        return Outcome.model_validate(document)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        field = ".".join(str(part) for part in first["loc"]) or "record"
        raise OutcomeInputError(
            f"{where}: not an outcome record: {field}: {first['msg']}"
        ) from None


def read_file(path: str) -> list[Outcome]:
    """Every outcome of a JSONL file; blank lines are skipped."""
    file = Path(path)
    if not file.is_file():
        raise OutcomeInputError(f"{path}: no such file")
    outcomes = []
    with file.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                outcomes.append(parse_outcome(line, f"{path}:{number}"))
    if not outcomes:
        raise OutcomeInputError(f"{path}: no outcome records (the file is empty)")
    return outcomes


def read_topic(bootstrap_servers: str, topic: str, idle_timeout_s: float = 30.0) -> list[Outcome]:
    """Every outcome on `topic` up to its end offsets at start."""
    outcomes = [
        parse_outcome(value, f"{topic}[{partition}]@{offset}")
        for partition, offset, value in _records(bootstrap_servers, topic, idle_timeout_s)
    ]
    if not outcomes:
        raise OutcomeInputError(f"topic {topic}: no outcome records")
    return outcomes


def _records(servers: str, topic: str, idle_timeout_s: float) -> Iterator[tuple[int, int, bytes]]:
    from jobs.connectors.brokers import TopicReadError, read_to_end

    try:
        addresses = check_bootstrap(servers)
    except ValueError as error:
        raise OutcomeInputError(f"--bootstrap-servers: {error}") from None
    try:
        yield from read_to_end(addresses, topic, idle_timeout_s)
    except TopicReadError as error:
        raise OutcomeInputError(str(error)) from None
