"""File mode's ends: the events file read as lines in file order, and the collected output rows
written to the actions, late-events and dead-letter files by the client that runs the job.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from pyflink.common import WatermarkStrategy
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.datastream.connectors.file_system import FileSource, StreamFormat

from jobs.operators.rows import KIND_ACTION, KIND_DLQ, KIND_LATE, KIND_OUTCOME, KIND_SUPPRESSED


def file_lines(env: StreamExecutionEnvironment, config):
    """The events file, one line per record, in file order (a text file is not split)."""
    source = FileSource.for_record_stream_format(
        StreamFormat.text_line_format(), str(config.events_path)
    ).build()
    return (
        env.from_source(source, WatermarkStrategy.no_watermarks(), "events-file")
        .uid("source-events-file")
        .set_parallelism(1)
    )


class FileOutputs:
    """Writes collected rows to the actions / suppressed / outcomes / late / dead-letter files,
    counting each kind."""

    def __init__(self, config):
        self.paths: dict[str, Path | None] = {
            KIND_ACTION: config.out_path,
            KIND_LATE: config.late_out_path,
            KIND_DLQ: config.dlq_out_path,
            KIND_SUPPRESSED: config.suppressed_out_path,
            KIND_OUTCOME: config.outcomes_out_path,
        }
        self.counts: Counter[str] = Counter()

    def write_all(self, rows) -> Counter[str]:
        files = {
            kind: open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed below
            for kind, path in self.paths.items()
            if path is not None
        }
        try:
            for row in rows:
                kind = row[0]
                self.counts[kind] += 1
                out = files.get(kind)
                if out is not None:
                    out.write(row[2])
                    out.write("\n")
        finally:
            for out in files.values():
                out.close()
        return self.counts
