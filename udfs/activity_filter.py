"""The JVM activity filter (udfs/jvm ActivityFilter, hosted by CollapseActivity) as a pure Python
model: what it passes on to the Python operator, and when. The Java class follows this model
step for step; a test feeds both the same records and compares their outputs line by line.

The rule, per user (only with a silence rule, when every rule's filters name their types):

1. Records Java could not decode, events of a type some rule's filters name, and late events
   (ts below the watermark) pass at once. An on-time event of a silence start type, or any
   undecoded record (it may be one, at any ts), lowers the user's earliest start.
2. Activity (the other types) before the earliest start: per bucket of `bucket_ms` the earliest
   and latest are held, those between skipped. A start at s releases the held ones at or after
   s; the watermark passing a held one drops it (no start at or before it can come on time).
3. Activity at or after the earliest start: a bucket's first one, and one earlier than anything
   forwarded from the bucket, goes at once; one later than everything forwarded and pending
   becomes the bucket's pending latest (the one it replaces is skipped); others are skipped.
4. A pending latest goes when the watermark is about to pass it (an event-time timer at ts + 1,
   before the watermark goes on), or at the flush: a processing-time timer `flush_after_ms`
   after it arrived, on the timer grid, so an idle input never strands it.
5. A bucket's entry is dropped at its end plus the user's bucket-end delay (udfs/timing.py);
   releases go in bucket order.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from udfs.timing import bucket_end_delay, bucket_end_spread, round_up

MIN_WATERMARK = -(2**63)  # Flink's watermark before any arrives
MAX_WATERMARK = 2**63 - 1  # and at the end of a bounded input

# The flush waits idle_fire_after / this: well inside Python's idle forcing, which waits
# idle_fire_after after the last input (so the flush, a grid step later at most, comes first).
ACTIVITY_FLUSH_DIVISOR = 8


class FilterSettings(NamedTuple):
    """The filter's parameters, as jobs/connectors/kafka_source.py passes them to the JVM."""

    bucket_ms: int
    filtered_types: frozenset[str]
    start_types: frozenset[str] | None  # None: any event may start a silence
    flush_after_ms: int  # 0: only the watermark releases a pending latest
    bucket_end_spread_ms: int


def filter_settings(engine, idle_fire_after_ms: int | None) -> FilterSettings | None:
    """The filter for this engine's rules, or None when they have no activity (no silence
    rule, or a rule whose filters may match any type)."""
    if engine.filtered_types is None:
        return None
    idle = idle_fire_after_ms
    return FilterSettings(
        engine.activity_bucket_ms,
        engine.filtered_types,
        engine.silence_start_types(),
        max(idle // ACTIVITY_FLUSH_DIVISOR, 1) if idle else 0,
        bucket_end_spread(engine.activity_bucket_ms),
    )


class Record(NamedTuple):
    """A keyed record as the filter reads it; `item` is carried through untouched."""

    user_id: str
    decoded: bool  # decoded in SQL; False: only Python can read it (type and ts unknown)
    event_type: str | None
    ts: int | None
    item: Any


class Emit(NamedTuple):
    record: Record


class Watermark(NamedTuple):
    ts: int


class Timer(NamedTuple):
    """A timer registration (logged for the record-by-record comparison with Java)."""

    domain: str  # "event" or "processing"
    user_id: str
    at: int


# A bucket's entry: [fwd_min, fwd_max, pending, pre_first, pre_last], as in the Java class.
FWD_MIN, FWD_MAX, PENDING, PRE_FIRST, PRE_LAST = range(5)


@dataclass
class _User:
    earliest_start: int | None = None
    buckets: dict[int, list] = field(default_factory=dict)


class ActivityFilter:
    """The filter over all users, with Flink's timer service modelled: timers fire in (time,
    user) order, event-time ones before the watermark that reached them goes on. Everything it
    passes on, in order, is appended to `out` (Emit, Watermark, and Timer registrations)."""

    def __init__(self, settings: FilterSettings):
        if settings.bucket_ms <= 0:
            raise ValueError(f"bucket_ms must be positive: {settings.bucket_ms}")
        self.bucket_ms = settings.bucket_ms
        self.filtered_types = frozenset(settings.filtered_types)
        starts = settings.start_types
        self.start_types = None if starts is None else frozenset(starts)
        self.flush_after_ms = max(0, settings.flush_after_ms)
        self.spread_ms = max(1, settings.bucket_end_spread_ms)
        self.watermark = MIN_WATERMARK
        self.now = 0  # processing time
        self.users: dict[str, _User] = {}
        self.out: list[Emit | Watermark | Timer] = []
        self.skipped = 0
        self.held = 0
        self._timers: dict[str, list[tuple[int, str]]] = {"event": [], "processing": []}
        self._registered: set[tuple[str, int, str]] = set()

    # Host: input, time, timers.

    def process(self, record: Record) -> None:
        user = self.users.setdefault(record.user_id, _User())
        self._process(record.user_id, user, record)

    def advance_watermark(self, watermark: int) -> None:
        """A watermark from upstream: due event-time timers fire, then it goes on."""
        if watermark <= self.watermark:
            return
        self.watermark = watermark
        self._fire("event", watermark)
        self.out.append(Watermark(watermark))

    def advance_processing_time(self, now: int) -> None:
        """Wall-clock time reached `now`: due processing-time timers (the flush) fire."""
        self.now = max(self.now, now)
        self._fire("processing", self.now)

    def drain(self) -> list[Emit | Watermark | Timer]:
        out, self.out = self.out, []
        return out

    def _register(self, domain: str, user_id: str, at: int) -> None:
        self.out.append(Timer(domain, user_id, at))
        if (domain, at, user_id) not in self._registered:
            self._registered.add((domain, at, user_id))
            heapq.heappush(self._timers[domain], (at, user_id))

    def _fire(self, domain: str, until: int) -> None:
        queue = self._timers[domain]
        while queue and queue[0][0] <= until:
            at, user_id = heapq.heappop(queue)
            self._registered.discard((domain, at, user_id))
            self._on_timer(self.users[user_id], at, domain == "event")

    # The rule (ActivityFilter.java, method for method).

    def _process(self, user_id: str, user: _User, record: Record) -> None:
        watermark = self.watermark
        if not record.decoded:
            self.out.append(Emit(record))  # Python decodes it; it may be a start of any type
            if self.start_types is not None:
                self._started(user, MIN_WATERMARK, watermark)
            return
        ts = record.ts
        if record.event_type in self.filtered_types:
            self.out.append(Emit(record))
            starts = self.start_types
            if starts is not None and ts >= watermark and record.event_type in starts:
                self._started(user, ts, watermark)
            return
        if ts < watermark:
            self.out.append(Emit(record))  # late: Python says so and counts it
            return
        if self.start_types is not None:
            if user.earliest_start is None or ts < user.earliest_start:
                self._hold_before_start(user, record)
                return
        self._arrive(user, record)

    def _started(self, user: _User, ts: int, watermark: int) -> None:
        if user.earliest_start is not None and user.earliest_start <= ts:
            return
        user.earliest_start = ts
        start = max(ts, watermark)  # held records below the watermark: not on time now
        for bucket in sorted(user.buckets):
            entry = user.buckets[bucket]
            first, last = entry[PRE_FIRST], entry[PRE_LAST]
            if first is None or _latest(first, last).ts < start:
                continue
            first_too = first.ts >= start
            entry[PRE_FIRST] = None if first_too else first  # may still be released earlier
            entry[PRE_LAST] = None
            if first_too:
                self.held -= 1
                self._arrive(user, first)
            if last is not None:
                self.held -= 1
                self._arrive(user, last)

    def _hold_before_start(self, user: _User, record: Record) -> None:
        ts = record.ts
        entry = self._entry(user, ts // self.bucket_ms)
        first, last = entry[PRE_FIRST], entry[PRE_LAST]
        if first is None:
            entry[PRE_FIRST] = record
        elif ts < first.ts:
            if last is None:
                entry[PRE_LAST] = first
            else:
                self._discard()  # the old earliest is in between now
            entry[PRE_FIRST] = record
        elif ts > _latest(first, last).ts:
            if last is not None:
                self._discard()
            entry[PRE_LAST] = record
        else:
            self.skipped += 1
            return
        self.held += 1
        self._register("event", record.user_id, ts + 1)  # dropped once the watermark passes it

    def _arrive(self, user: _User, record: Record) -> None:
        ts = record.ts
        bucket = ts // self.bucket_ms
        entry = self._entry(user, bucket)
        low = entry[FWD_MIN]
        if low is None or ts < low:
            entry[FWD_MIN] = ts
            if low is None:
                entry[FWD_MAX] = ts
                # What was forwarded is kept until the bucket's end (its later records compare).
                end = (bucket + 1) * self.bucket_ms
                delay = bucket_end_delay(record.user_id, self.spread_ms)
                self._register("event", record.user_id, end + delay)
            self.out.append(Emit(record))
            return
        pending = entry[PENDING]
        if ts <= entry[FWD_MAX] or (pending is not None and ts <= pending.ts):
            self.skipped += 1
            return
        if pending is not None:
            self._discard()
        self.held += 1
        entry[PENDING] = record
        self._register("event", record.user_id, ts + 1)
        if self.flush_after_ms > 0:
            self._register("processing", record.user_id, round_up(self.now + self.flush_after_ms))

    def _on_timer(self, user: _User, timestamp: int, event_time: bool) -> None:
        for bucket in sorted(user.buckets):
            entry = user.buckets[bucket]
            pending = entry[PENDING]
            if pending is not None and (not event_time or pending.ts < timestamp):
                entry[PENDING] = None
                entry[FWD_MAX] = pending.ts
                self.held -= 1
                self.out.append(Emit(pending))
            first = entry[PRE_FIRST]
            if event_time and first is not None:
                # The watermark passed these: no start at or before them can come on time now.
                last = entry[PRE_LAST]
                if _latest(first, last).ts < timestamp:
                    self._discard()
                    if last is not None:
                        self._discard()
                    entry[PRE_FIRST] = entry[PRE_LAST] = None
                elif first.ts < timestamp:
                    self._discard()
                    entry[PRE_FIRST], entry[PRE_LAST] = last, None
            ended = event_time and (bucket + 1) * self.bucket_ms <= timestamp
            if ended or all(entry[i] is None for i in (FWD_MIN, PENDING, PRE_FIRST)):
                del user.buckets[bucket]

    @staticmethod
    def _entry(user: _User, bucket: int) -> list:
        entry = user.buckets.get(bucket)
        if entry is None:
            entry = user.buckets[bucket] = [None] * 5
        return entry

    def _discard(self) -> None:
        """A held record that will never be forwarded."""
        self.held -= 1
        self.skipped += 1


def _latest(first: Record, last: Record | None) -> Record:
    return last if last is not None else first
