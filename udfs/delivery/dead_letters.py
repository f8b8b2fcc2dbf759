"""The delivery dead letters as a source for `moments redrive`: the dead-letter topic read from its
beginning up to its end at start (what fails again is appended after that end, so a run ends), or
a dead-letter file; a filter picks the letters to send again, each to its one destination.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pydantic import ValidationError

from schemas.action import Action
from udfs.delivery.pipeline import BatchOutcome, SourceRecord
from udfs.delivery.topic import TopicSource


@dataclass(frozen=True)
class LetterFilter:
    """Which letters to send again; an empty field matches everything."""

    destinations: tuple[str, ...] = ()
    rule_ids: tuple[str, ...] = ()
    reason_contains: str = ""
    failed_after_ms: int | None = None

    def matches(self, letter: dict) -> bool:
        action = letter.get("action") or {}
        return (
            (not self.destinations or letter.get("destination") in self.destinations)
            and (not self.rule_ids or action.get("rule_id") in self.rule_ids)
            and self.reason_contains in str(letter.get("reason", ""))
            and (self.failed_after_ms is None or letter.get("failed_at", 0) >= self.failed_after_ms)
        )


def parse_letter(value: bytes) -> tuple[Action | None, str]:
    """A dead letter as the action to send again, with its one failed destination."""
    try:
        letter = json.loads(value)
        action = Action.model_validate(letter["action"])
        return action.model_copy(update={"destinations": [letter["destination"]]}), ""
    except (ValueError, KeyError, TypeError, ValidationError) as exc:
        return None, f"not a redrivable dead letter: {type(exc).__name__}"


class FilteredSource:
    """Passes on the records of `source` whose letter `keep` accepts; counts the others."""

    def __init__(self, source, keep: Callable[[dict], bool]):
        self.source, self.keep = source, keep
        self.dlq_location = source.dlq_location
        self.passed_over: Counter = Counter()

    def read(self, max_records: int, stop: threading.Event) -> list[SourceRecord] | None:
        while True:
            records = self.source.read(max_records, stop)
            if not records:
                return records
            kept = [r for r in records if self._wanted(r.value)]
            if kept:
                return kept

    def _wanted(self, value: bytes) -> bool:
        try:
            letter = json.loads(value)
        except ValueError:
            self.passed_over["unreadable"] += 1
            return False
        if not isinstance(letter, dict) or letter.get("action") is None:
            self.passed_over["not an action"] += 1
            return False
        if not self.keep(letter):
            self.passed_over["filtered out"] += 1
            return False
        return True

    def settle(self, records: Sequence[SourceRecord], outcome: BatchOutcome, letters_durable):
        self.source.settle(records, outcome, letters_durable)

    def close(self) -> None:
        self.source.close()

    def __enter__(self) -> FilteredSource:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class DeadLetterTopic(TopicSource):
    """The dead-letter topic from its beginning to its end offsets at start, no consumer group
    (nothing committed: the ledger makes a second run skip what the first delivered). Letters
    that fail again are appended to the same topic."""

    def __init__(self, bootstrap_servers: str, topic: str, batch_size: int = 500):
        from kafka import KafkaConsumer, KafkaProducer, TopicPartition

        servers = bootstrap_servers.split(",")
        self.consumer = KafkaConsumer(
            bootstrap_servers=servers, group_id=None, enable_auto_commit=False
        )
        partitions = [
            TopicPartition(topic, p)
            for p in sorted(self.consumer.partitions_for_topic(topic) or ())
        ]
        self.consumer.assign(partitions)
        # Explicit offsets: a lazy seek_to_beginning() left position() waiting here.
        for tp, offset in self.consumer.beginning_offsets(partitions).items():
            self.consumer.seek(tp, offset)
        self._ends = self.consumer.end_offsets(partitions)
        self.producer = KafkaProducer(bootstrap_servers=servers, acks="all", linger_ms=20)
        self.dlq_topic = self.dlq_location = topic
        self.batch_size, self.metrics = batch_size, None

    def read(self, max_records: int, stop: threading.Event) -> list[SourceRecord] | None:
        open_partitions = [tp for tp, end in self._ends.items() if self.consumer.position(tp) < end]
        if not open_partitions or stop.is_set():
            return None
        polled = self.consumer.poll(timeout_ms=1000, max_records=max_records)
        out = []
        for tp, records in polled.items():
            for r in records:
                if r.offset < self._ends[tp]:
                    position = {"topic": r.topic, "partition": r.partition, "offset": r.offset}
                    out.append(SourceRecord(r.value or b"", position))
        return out

    def settle(self, records: Sequence[SourceRecord], outcome: BatchOutcome, letters_durable):
        sent = [self.producer.send(self.dlq_topic, key=k, value=v) for k, v in outcome.dead_letters]
        self.producer.flush()
        for future in sent:
            future.get(timeout=60)
        letters_durable()
