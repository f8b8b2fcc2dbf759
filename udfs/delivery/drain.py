"""The delivery loop shared by a topic and a file: read a batch of records from a source, deliver
it, then let the source settle it (dead letters made durable, then recorded in the ledger, then
what is final committed), until the source ends, `max_actions` records are settled, or `stop` is
set.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from udfs.delivery.pipeline import BatchOutcome, DeliveryPipeline, SourceRecord


class RecordSource(Protocol):
    """Where actions come from and where their dead letters go (a topic, a file)."""

    dlq_location: str  # named in the summary

    def read(self, max_records: int, stop: threading.Event) -> list[SourceRecord] | None:
        """Up to `max_records` records; [] when none are ready yet, None when the source ended."""
        ...

    def settle(
        self,
        records: Sequence[SourceRecord],
        outcome: BatchOutcome,
        letters_durable: Callable[[], None],
    ) -> None:
        """Make the dead letters durable, call `letters_durable`, then commit the records whose
        outcome is final."""
        ...


def drain(
    pipeline: DeliveryPipeline,
    source: RecordSource,
    batch_size: int = 500,
    max_actions: int | None = None,
    stop: threading.Event | None = None,
) -> dict:
    """Deliver everything `source` yields in batches of `batch_size`; returns the summary."""
    stop = stop or threading.Event()
    started = time.monotonic()
    totals = Totals()
    while not stop.is_set():
        remaining = None if max_actions is None else max_actions - totals.records
        if remaining is not None and remaining <= 0:
            break
        records = source.read(min(batch_size, remaining or batch_size), stop)
        if records is None:
            break
        if not records:
            continue
        outcome = pipeline.process(records)
        source.settle(records, outcome, functools.partial(pipeline.letters_durable, outcome))
        totals.add(outcome, len(records))
    return totals.summary(pipeline, time.monotonic() - started, dlq=source.dlq_location)


class Totals:
    """Counts over the batches of one run."""

    def __init__(self) -> None:
        self.records = 0
        self.unfinished = 0
        self.delivered = 0
        self.dead_lettered = 0
        self.skipped_duplicates = 0

    def add(self, outcome: BatchOutcome, records: int) -> None:
        self.records += records
        self.unfinished += outcome.finished.count(False)
        self.delivered += outcome.delivered
        self.dead_lettered += len(outcome.dead_letters)
        self.skipped_duplicates += outcome.skipped_duplicates

    def summary(self, pipeline: DeliveryPipeline, seconds: float, **extra) -> dict:
        return {
            "records": self.records,
            "unfinished_records": self.unfinished,
            "deliveries": self.delivered,
            "dead_lettered_records": self.dead_lettered,
            "skipped_duplicates": self.skipped_duplicates,
            "seconds": round(seconds, 3),
            "deliveries_per_s": round(self.delivered / seconds, 1) if seconds > 0 else None,
            "http": pipeline.deliverer.stats.as_dict(),
            **extra,
        }


def format_summary(summary: dict) -> str:
    """The summary as the few lines `moments deliver` prints when it ends."""
    http = summary["http"]
    lines = [
        f"records read: {summary['records']}  deliveries: {summary['deliveries']}  "
        f"dead-lettered: {summary['dead_lettered_records']}  "
        f"duplicates skipped: {summary['skipped_duplicates']}  "
        f"unfinished (not committed): {summary['unfinished_records']}",
        f"http requests: {http['requests']}  retries: {http['retries']}  "
        f"429s: {http['rate_limited']}  5xx: {http['server_errors']}  "
        f"timeouts/dropped: {http['transport_errors']}",
        f"time: {summary['seconds']}s  deliveries/s: {summary['deliveries_per_s']}",
    ]
    if summary.get("dlq") and summary["dead_lettered_records"]:
        lines.append(f"dead letters: {summary['dlq']}")
    return "\n".join(lines)
