"""Reading event files for replays: JSONL line by line, Parquet in record batches (never whole).

Each reader yields `(offset, record)`: for JSONL the 1-based line number and the raw bytes, for
Parquet the 0-based row number and a dict. `progress()` says how far through the input it is.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class EventFile:
    def __init__(self, path: str | Path, batch_size: int = 65_536):
        self.path = Path(path)
        self.batch_size = batch_size
        self.is_parquet = self.path.suffix.lower() in (".parquet", ".pq")
        self.total = 0
        self.done = 0
        if not self.path.is_file():
            raise FileNotFoundError(f"events file not found: {self.path}")

    def records(self) -> Iterator[tuple[int, bytes | dict[str, Any]]]:
        return self._parquet() if self.is_parquet else self._jsonl()

    def progress(self) -> float:
        return self.done / self.total if self.total else 1.0

    def _jsonl(self) -> Iterator[tuple[int, bytes]]:
        self.total = os.path.getsize(self.path)
        with open(self.path, "rb") as handle:
            for line_no, line in enumerate(handle, start=1):
                self.done += len(line)
                if line.strip():
                    yield line_no, line.rstrip(b"\r\n")

    def _parquet(self) -> Iterator[tuple[int, dict[str, Any]]]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(self.path)
        self.total = parquet.metadata.num_rows
        row = 0
        for batch in parquet.iter_batches(batch_size=self.batch_size):
            if "ts" in batch.schema.names:
                ts = batch.column("ts")
                if pa.types.is_timestamp(ts.type):
                    # Arrow timestamps are epoch-based whatever their unit or zone: take ms as int.
                    ms = ts.cast(pa.timestamp("ms", tz=ts.type.tz), safe=False).cast(pa.int64())
                    batch = batch.set_column(batch.schema.get_field_index("ts"), "ts", ms)
            for record in batch.to_pylist():
                props = record.get("properties")
                if isinstance(props, str):
                    try:
                        record["properties"] = json.loads(props)
                    except ValueError:
                        pass  # left as a string: the contract check names it
                elif isinstance(props, list):
                    record["properties"] = dict(props)  # an Arrow map column
                yield row, record
                row += 1
                self.done = row
