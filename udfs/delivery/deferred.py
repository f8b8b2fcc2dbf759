"""Actions deferred by quiet hours (`deliver_at` in the future, epoch ms), held in this process
until then while the records after them are delivered at once.

A held record is settled as not final, so a topic commits its partition only up to the lowest
offset still held (`topic.OffsetFrontier`): a process that dies meanwhile loses nothing, its
successor reads the held actions again (and what came after them, which the delivery ledger skips
as accepted).
"""

from __future__ import annotations

import heapq
import itertools
import json
import time
from collections.abc import Callable, Sequence

from udfs.delivery.pipeline import SourceRecord

_FIELD = b'"deliver_at"'


def deliver_at_ms(value: bytes) -> int | None:
    """The record's top-level `deliver_at` when it is an integer, else None (absent, null, or a
    record the pipeline will dead-letter as invalid)."""
    if _FIELD not in value:
        return None
    try:
        document = json.loads(value)
    except ValueError:
        return None
    at = document.get("deliver_at") if isinstance(document, dict) else None
    return at if isinstance(at, int) and not isinstance(at, bool) else None


def _key(record: SourceRecord) -> tuple:
    return tuple(sorted(record.position.items()))


class HeldActions:
    """Records waiting for their `deliver_at` on `clock` (wall-clock seconds), earliest first; a
    record read again (after a rebalance) is held once."""

    def __init__(self, clock: Callable[[], float] = time.time):
        self._clock = clock
        self._heap: list[tuple[int, int, tuple, SourceRecord]] = []
        self._keys: set[tuple] = set()
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    def split(self, records: Sequence[SourceRecord]) -> tuple[list[SourceRecord], list[bool]]:
        """The records to deliver now, and for each record whether it is held instead."""
        now_ms = self.now_ms()
        ready: list[SourceRecord] = []
        held: list[bool] = []
        for record in records:
            at = deliver_at_ms(record.value)
            if at is None or at <= now_ms:
                ready.append(record)
                held.append(False)
                continue
            key = _key(record)
            if key not in self._keys:
                self._keys.add(key)
                heapq.heappush(self._heap, (at, next(self._order), key, record))
            held.append(True)
        return ready, held

    def due(self) -> list[SourceRecord]:
        """The held records whose `deliver_at` has come, in `deliver_at` order, no longer held."""
        now_ms = self.now_ms()
        released = []
        while self._heap and self._heap[0][0] <= now_ms:
            _, _, key, record = heapq.heappop(self._heap)
            self._keys.discard(key)
            released.append(record)
        return released

    def seconds_until_due(self) -> float | None:
        """How long until the earliest held record is due (0 if it is), None when none is held."""
        if not self._heap:
            return None
        return max(0.0, (self._heap[0][0] - self.now_ms()) / 1000)


def merge_finished(held: Sequence[bool], finished_ready: Sequence[bool]) -> list[bool]:
    """Per record of a batch, in order: False for a held one, else the outcome of the next record
    delivered now."""
    outcomes = iter(finished_ready)
    return [False if is_held else next(outcomes) for is_held in held]
