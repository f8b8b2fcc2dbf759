"""A JSONL file of actions as a record source: one record per non-empty line, dead letters
appended to a second file that is created only when there is one."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import BinaryIO

from udfs.delivery.pipeline import BatchOutcome, SourceRecord


class FileSource:
    """Reads `path` line by line; `close()` (or `with`) closes both files."""

    def __init__(self, path: Path, dlq_path: Path):
        self.path, self.dlq_path = path, dlq_path
        self.dlq_location = str(dlq_path)
        self._lines = path.open("rb")
        self._records = self._numbered(self._lines)
        self._dlq: BinaryIO | None = None

    def _numbered(self, lines: BinaryIO) -> Iterator[SourceRecord]:
        for number, line in enumerate(lines, start=1):
            if line.strip():
                yield SourceRecord(line.rstrip(b"\r\n"), {"file": str(self.path), "line": number})

    def read(self, max_records: int, stop: threading.Event) -> list[SourceRecord] | None:
        return list(islice(self._records, max_records)) or None

    def settle(
        self,
        records: Sequence[SourceRecord],
        outcome: BatchOutcome,
        letters_durable: Callable[[], None] = lambda: None,
    ) -> None:
        if outcome.dead_letters and self._dlq is None:
            self._dlq = self.dlq_path.open("ab")
        for _key, value in outcome.dead_letters:
            self._dlq.write(value + b"\n")
        if self._dlq is not None:
            self._dlq.flush()
        letters_durable()

    def close(self) -> None:
        self._lines.close()
        if self._dlq is not None:
            self._dlq.close()

    def __enter__(self) -> FileSource:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
