"""The delivery loop shared by a topic and a file: read a batch of records from a source, deliver
it (holding actions deferred to a later `deliver_at`), then let the source settle it (dead letters
made durable, then recorded in the ledger, then what is final committed), until the source ends
and nothing is held, `max_actions` records are read, or `stop` is set.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from udfs.delivery.deferred import HeldActions, merge_finished
from udfs.delivery.pipeline import BatchOutcome, DeliveryPipeline, SourceRecord

# Longest sleep while only held actions are left (the source ended), should the wall clock jump.
MAX_IDLE_WAIT_S = 1.0


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
        outcome is final. A source may also have `owns(position) -> bool`: False for a record
        of a partition no longer assigned to it (a held one is then dropped, not delivered)."""
        ...


def drain(
    pipeline: DeliveryPipeline,
    source: RecordSource,
    batch_size: int = 500,
    max_actions: int | None = None,
    stop: threading.Event | None = None,
    clock: Callable[[], float] = time.time,
) -> dict:
    """Deliver everything `source` yields in batches of `batch_size`; returns the summary.

    An action whose `deliver_at` is after `clock` is held (deferred.py) and settled as not final,
    while the records after it are delivered; it is delivered once due, then settled again as
    final. When the source ends the loop waits for the held actions; when `stop` is set it leaves
    them unsettled (not committed: a restart reads them again)."""
    stop = stop or threading.Event()
    started = time.monotonic()
    totals = Totals()
    held = HeldActions(clock)
    still_owned = getattr(source, "owns", None)
    reading = True
    while not stop.is_set():
        released = held.due()
        if still_owned is not None:
            # A partition moved to another replica: it reads these again from the commit.
            released = [r for r in released if still_owned(r.position)]
        if released:
            outcome = pipeline.process(released)
            source.settle(released, outcome, functools.partial(pipeline.letters_durable, outcome))
            totals.add(outcome, 0)
        if reading:
            remaining = None if max_actions is None else max_actions - totals.records
            records = None
            if remaining is None or remaining > 0:
                records = source.read(min(batch_size, remaining or batch_size), stop)
            if records is None:
                reading = False
            elif records:
                ready, holding = held.split(records)
                outcome = pipeline.process(ready) if ready else BatchOutcome()
                outcome.finished = merge_finished(holding, outcome.finished)
                source.settle(
                    records, outcome, functools.partial(pipeline.letters_durable, outcome)
                )
                totals.add(outcome, len(records), deferred=holding.count(True))
            pipeline.deliverer.metrics.deferred_held.set(len(held))
            continue
        wait_s = held.seconds_until_due()
        if wait_s is None:
            break
        stop.wait(min(wait_s, MAX_IDLE_WAIT_S))
    pipeline.deliverer.metrics.deferred_held.set(len(held))
    totals.unfinished += len(held)
    return totals.summary(pipeline, time.monotonic() - started, dlq=source.dlq_location)


class Totals:
    """Counts over the batches of one run."""

    def __init__(self) -> None:
        self.records = 0
        self.unfinished = 0
        self.delivered = 0
        self.dead_lettered = 0
        self.skipped_duplicates = 0
        self.deferred = 0

    def add(self, outcome: BatchOutcome, records: int, deferred: int = 0) -> None:
        """`deferred`: records of the batch held for their deliver_at (not final yet, but not
        unfinished: they are counted when they are delivered or left held)."""
        self.records += records
        self.unfinished += outcome.finished.count(False) - deferred
        self.delivered += outcome.delivered
        self.dead_lettered += len(outcome.dead_letters)
        self.skipped_duplicates += outcome.skipped_duplicates
        self.deferred += deferred

    def summary(self, pipeline: DeliveryPipeline, seconds: float, **extra) -> dict:
        return {
            "records": self.records,
            "unfinished_records": self.unfinished,
            "deliveries": self.delivered,
            "dead_lettered_records": self.dead_lettered,
            "skipped_duplicates": self.skipped_duplicates,
            "deferred_records": self.deferred,
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
        f"unfinished (not committed): {summary['unfinished_records']}  "
        f"deferred (held until deliver_at): {summary['deferred_records']}",
        f"http requests: {http['requests']}  retries: {http['retries']}  "
        f"429s: {http['rate_limited']}  5xx: {http['server_errors']}  "
        f"timeouts/dropped: {http['transport_errors']}",
        f"time: {summary['seconds']}s  deliveries/s: {summary['deliveries_per_s']}",
    ]
    if summary.get("dlq") and summary["dead_lettered_records"]:
        lines.append(f"dead letters: {summary['dlq']}")
    return "\n".join(lines)
