"""The actions topic as a record source: a consumer of its own group (auto-commit off) and a
producer for the dead-letter topic. A batch's offsets are committed only after its dead letters
are acknowledged, and per partition only up to the lowest offset read without a final outcome in
any batch so far (an action held for its `deliver_at`, or left unfinished by a stop).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from udfs.delivery.metrics import DeliveryMetrics
from udfs.delivery.pipeline import BatchOutcome, SourceRecord

log = logging.getLogger("moments.deliver")

# Generous: a batch waits out 429s and retries before its offsets are committed.
MAX_POLL_INTERVAL_MS = 900_000
# How long the first poll of a batch waits for a record before the batch is empty.
EMPTY_POLL_S = 0.2
# Consumer lag is measured after a commit or, when idle, at most this often (a broker round trip).
LAG_EVERY_S = 5.0


class TopicSource:
    """Reads `topic` as `group_id`; `max_idle_s` ends the source after that long without records,
    counted once partitions are assigned. `close()` (or `with`) commits nothing more."""

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        group_id: str,
        dlq_topic: str,
        *,
        start_from: str = "earliest",
        batch_size: int = 500,
        linger_s: float = 0.2,
        max_idle_s: float | None = None,
        metrics: DeliveryMetrics | None = None,
    ):
        from kafka import KafkaConsumer, KafkaProducer

        servers = bootstrap_servers.split(",")
        self.consumer = KafkaConsumer(
            topic,
            bootstrap_servers=servers,
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset=start_from,
            max_poll_records=batch_size,
            max_poll_interval_ms=MAX_POLL_INTERVAL_MS,
        )
        self.producer = KafkaProducer(
            bootstrap_servers=servers, acks="all", retries=10, linger_ms=20
        )
        self.dlq_topic = self.dlq_location = dlq_topic
        self.linger_s, self.max_idle_s = linger_s, max_idle_s
        self._last_record_at = time.monotonic()
        self.metrics = metrics
        self._lag_at = 0.0
        self._lag_partitions: set = set()
        self.frontier = OffsetFrontier()

    def read(self, max_records: int, stop: threading.Event) -> list[SourceRecord] | None:
        records = self._collect(max_records, stop)
        if records:
            return [
                SourceRecord(
                    r.value or b"", {"topic": r.topic, "partition": r.partition, "offset": r.offset}
                )
                for r in records
            ]
        if not self.consumer.assignment():
            # Not idle yet: still joining the group (e.g. waiting for a crashed member's session
            # to time out before its partitions are handed over).
            self._last_record_at = time.monotonic()
        elif self._idle_for() >= (self.max_idle_s or float("inf")):
            log.info("idle for %.1fs: stopping", self.max_idle_s)
            return None
        elif time.monotonic() - self._lag_at >= LAG_EVERY_S:
            self._measure_lag()
        return []

    def _measure_lag(self) -> None:
        """Per assigned partition: the log end offset minus this consumer's position (after a
        commit, the committed offset). Partitions no longer assigned drop out of the gauge."""
        if self.metrics is None:
            return
        self._lag_at = time.monotonic()
        assigned = self.consumer.assignment()
        gauge = self.metrics.consumer_lag
        for gone in self._lag_partitions - assigned:
            gauge.remove(gone.topic, str(gone.partition))
        self._lag_partitions = set(assigned)
        if not assigned:
            return
        ends = self.consumer.end_offsets(list(assigned))
        for tp in assigned:
            gauge.labels(tp.topic, str(tp.partition)).set(
                max(0, ends[tp] - self.consumer.position(tp))
            )

    def _idle_for(self) -> float:
        return time.monotonic() - self._last_record_at

    def _collect(self, max_records: int, stop: threading.Event) -> list:
        """Poll until `max_records`, or `linger_s` after the first record, or 200 ms of nothing."""
        batch: list = []
        deadline: float | None = None
        while len(batch) < max_records and not stop.is_set():
            now = time.monotonic()
            wait_s = EMPTY_POLL_S if deadline is None else max(0.0, deadline - now)
            polled = self.consumer.poll(
                timeout_ms=int(wait_s * 1000), max_records=max_records - len(batch)
            )
            for records in polled.values():
                batch.extend(records)
            if not batch:
                return batch
            if deadline is None:
                deadline = now + self.linger_s
            if time.monotonic() >= deadline:
                break
        return batch

    def settle(
        self,
        records: Sequence[SourceRecord],
        outcome: BatchOutcome,
        letters_durable: Callable[[], None] = lambda: None,
    ) -> None:
        from kafka import TopicPartition
        from kafka.errors import CommitFailedError
        from kafka.structs import OffsetAndMetadata

        # Dead letters must be durable before the offsets that produced them are committed.
        sent = [self.producer.send(self.dlq_topic, key=k, value=v) for k, v in outcome.dead_letters]
        self.producer.flush()
        for future in sent:
            future.get(timeout=60)
        letters_durable()
        assigned = {(tp.topic, tp.partition) for tp in self.consumer.assignment()}
        self.frontier.keep_only(assigned)
        mine = [
            (record.position, done)
            for record, done in zip(records, outcome.finished, strict=True)
            if (record.position["topic"], record.position["partition"]) in assigned
        ]
        offsets = self.frontier.settle([p for p, _ in mine], [done for _, done in mine])
        if offsets:
            try:
                self.consumer.commit(
                    offsets={
                        TopicPartition(topic, partition): OffsetAndMetadata(offset, "", -1)
                        for (topic, partition), offset in offsets.items()
                    }
                )
            except CommitFailedError as exc:
                # Partitions moved to another member mid-batch: it redelivers them (duplicates,
                # never loss).
                log.warning("commit failed (rebalance?): %s", exc)
            else:
                self.frontier.committed(offsets)
        self._last_record_at = time.monotonic()
        self._measure_lag()
        log.info(
            "batch: %d records, %d delivered, %d dead-lettered",
            len(records),
            outcome.delivered,
            len(outcome.dead_letters),
        )

    def owns(self, position: dict) -> bool:
        """True while the record's partition is assigned to this consumer."""
        from kafka import TopicPartition

        return TopicPartition(position["topic"], position["partition"]) in (
            self.consumer.assignment()
        )

    def close(self) -> None:
        try:
            self.consumer.close(autocommit=False)
        finally:
            self.producer.close(timeout=30)

    def __enter__(self) -> TopicSource:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def committable(positions: Sequence[dict], finished: Sequence[bool]) -> dict[tuple[str, int], int]:
    """Per (topic, partition), the offset after the last record such that it and every earlier
    record of the batch are final. A record not final (stopped mid-batch) holds back the ones after
    it."""
    by_partition: dict[tuple[str, int], list[tuple[int, bool]]] = {}
    for position, done in zip(positions, finished, strict=True):
        key = (position["topic"], position["partition"])
        by_partition.setdefault(key, []).append((position["offset"], done))
    offsets = {}
    for key, entries in by_partition.items():
        next_offset = None
        for offset, done in sorted(entries):
            if not done:
                break
            next_offset = offset + 1
        if next_offset is not None:
            offsets[key] = next_offset
    return offsets


class OffsetFrontier:
    """What a consumer may commit, per (topic, partition), over every batch settled so far: the
    lowest offset read but not final (held for its deliver_at, or unfinished), else the offset
    after the highest read. A record settled not final and later final is released; partitions
    no longer assigned are forgotten (their new owner reads from the last commit)."""

    def __init__(self) -> None:
        self._open: dict[tuple[str, int], set[int]] = {}
        self._end: dict[tuple[str, int], int] = {}
        self._committed: dict[tuple[str, int], int] = {}

    def settle(
        self, positions: Sequence[dict], finished: Sequence[bool]
    ) -> dict[tuple[str, int], int]:
        """Records the outcomes; returns the offsets that moved past the last commit, per
        partition (a partition's first records: past the first offset read, where it started)."""
        touched = set()
        for position, done in zip(positions, finished, strict=True):
            key, offset = (position["topic"], position["partition"]), position["offset"]
            touched.add(key)
            self._committed.setdefault(key, offset)
            self._end[key] = max(self._end.get(key, offset), offset + 1)
            pending = self._open.setdefault(key, set())
            if done:
                pending.discard(offset)
            else:
                pending.add(offset)
        moved = {}
        for key in touched:
            pending = self._open[key]
            target = min(pending) if pending else self._end[key]
            if target > self._committed[key]:
                moved[key] = target
        return moved

    def committed(self, offsets: dict[tuple[str, int], int]) -> None:
        self._committed.update(offsets)

    def held_back(self, key: tuple[str, int]) -> int | None:
        """The lowest offset of the partition not final yet, if any."""
        pending = self._open.get(key)
        return min(pending) if pending else None

    def keep_only(self, assigned: set[tuple[str, int]]) -> None:
        for key in [key for key in self._end if key not in assigned]:
            self._open.pop(key, None)
            self._end.pop(key, None)
            self._committed.pop(key, None)
