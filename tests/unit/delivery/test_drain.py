"""The drain loop over in-memory and file sources, and which Kafka offsets a batch may commit."""

from __future__ import annotations

import json
import threading

from tests.unit.vendors.actions import make_action
from udfs.delivery.deliverer import DeliveryResult, DeliveryStats
from udfs.delivery.drain import drain, format_summary
from udfs.delivery.files import FileSource
from udfs.delivery.ledger import MemoryLedger
from udfs.delivery.metrics import DeliveryMetrics
from udfs.delivery.pipeline import DeliveryPipeline, SourceRecord
from udfs.delivery.topic import committable


class AcceptAll:
    """A deliverer whose every (action, destination) is delivered at once."""

    def __init__(self) -> None:
        self.stats = DeliveryStats()
        self.batches: list[int] = []
        self.ledger, self.metrics, self.stop = MemoryLedger(), DeliveryMetrics(), threading.Event()

    def deliver(self, actions):
        self.batches.append(len(actions))
        return [DeliveryResult(a, d, delivered=True) for a in actions for d in a.destinations]


class ListSource:
    """Records from a list; `settle` remembers what it was given."""

    dlq_location = "memory"

    def __init__(self, records, stop_after_reads=None, stop=None):
        self.records, self.settled, self.reads = list(records), [], 0
        self.stop_after_reads, self.stop = stop_after_reads, stop

    def read(self, max_records, stop):
        self.reads += 1
        if self.stop_after_reads is not None and self.reads > self.stop_after_reads:
            self.stop.set()
            return []
        batch, self.records = self.records[:max_records], self.records[max_records:]
        return batch or None

    def settle(self, records, outcome, letters_durable):
        letters_durable()
        self.settled.append((len(records), list(outcome.finished), len(outcome.dead_letters)))


def records(count, start=0):
    return [
        SourceRecord(
            make_action(user_id=f"u-{i}", destinations=("braze",)).to_json_bytes(), {"line": i}
        )
        for i in range(start, start + count)
    ]


def test_batches_respect_batch_size_and_max_actions():
    source = ListSource(records(1200))
    summary = drain(DeliveryPipeline(AcceptAll()), source, batch_size=500, max_actions=1100)
    assert [n for n, _, _ in source.settled] == [500, 500, 100]
    assert summary["records"] == 1100 and summary["deliveries"] == 1100
    assert summary["dlq"] == "memory"


def test_a_set_stop_ends_the_loop_between_batches():
    stop = threading.Event()
    source = ListSource(records(30), stop_after_reads=1, stop=stop)
    summary = drain(DeliveryPipeline(AcceptAll()), source, batch_size=10, stop=stop)
    assert summary["records"] == 10 and stop.is_set()


def test_bad_records_are_settled_as_dead_letters():
    source = ListSource([SourceRecord(b"{nope", {"line": 1}), *records(2)])
    summary = drain(DeliveryPipeline(AcceptAll()), source)
    assert source.settled == [(3, [True, True, True], 1)]
    assert summary["dead_lettered_records"] == 1
    assert "dead-lettered: 1" in format_summary(summary)


def test_file_source_skips_blank_lines_and_writes_dead_letters_only_when_needed(tmp_path):
    path, dlq = tmp_path / "a.jsonl", tmp_path / "a.dlq.jsonl"
    path.write_bytes(b"\n".join(r.value for r in records(3)) + b"\n\n")
    with FileSource(path, dlq) as source:
        summary = drain(DeliveryPipeline(AcceptAll()), source, batch_size=2)
    assert summary["records"] == 3 and not dlq.exists()

    path.write_bytes(records(1)[0].value + b"\nnot json\n")
    with FileSource(path, dlq) as source:
        summary = drain(DeliveryPipeline(AcceptAll()), source)
    [letter] = [json.loads(line) for line in dlq.read_text().splitlines()]
    assert letter["source"] == {"file": str(path), "line": 2}
    assert summary["dlq"] == str(dlq)


def test_committable_stops_at_the_first_unfinished_record_per_partition():
    positions = [
        {"topic": "t", "partition": 0, "offset": 7},
        {"topic": "t", "partition": 0, "offset": 8},
        {"topic": "t", "partition": 0, "offset": 9},
        {"topic": "t", "partition": 1, "offset": 3},
        {"topic": "t", "partition": 2, "offset": 5},
    ]
    finished = [True, False, True, True, False]
    assert committable(positions, finished) == {("t", 0): 8, ("t", 1): 4}
