"""The one host policy around the engine: lateness, timers, idle forcing and activity buckets.

`Host` runs an Engine over per-user state and timers reached through PyFlink's own interfaces (a
timer context, `ValueState`), so the Flink operator passes its objects straight through and the
backtest and the tests pass `MemoryTimerService` and `MemoryState`, a clock moved by hand.
"""

from __future__ import annotations

import heapq
import pickle
import time
from collections.abc import Callable, Iterator
from enum import Enum
from typing import Any, Protocol

from udfs.engine import (
    END_OF_TIME,
    NEW_BUCKET,
    UNCHANGED,
    Engine,
    UserState,
    buffer_event,
    events_as_tuples,
    events_from_tuples,
)
from udfs.model import EngineEvent, Fire
from udfs.timing import bucket_end_delay, bucket_end_spread, round_up

# Flink's watermark before any arrives.
MIN_WATERMARK = -(2**63)


class TimeDomain(Enum):
    """A timer's time domain, with the members and values of PyFlink's `TimeDomain`."""

    EVENT_TIME = 0
    PROCESSING_TIME = 1


_EVENT_TIME = TimeDomain.EVENT_TIME.value


class TimerService(Protocol):
    """The timers and watermark of the current key (PyFlink's `ctx.timer_service()`)."""

    def current_watermark(self) -> int: ...
    def register_event_time_timer(self, timestamp: int) -> None: ...
    def delete_event_time_timer(self, timestamp: int) -> None: ...
    def register_processing_time_timer(self, timestamp: int) -> None: ...
    def delete_processing_time_timer(self, timestamp: int) -> None: ...


class TimerContext(Protocol):
    """What a callback gets (PyFlink's KeyedProcessFunction contexts); `time_domain` on timers."""

    def timer_service(self) -> TimerService: ...
    def get_current_key(self) -> str: ...
    def time_domain(self) -> Any: ...


class ValueState(Protocol):
    """One value per key, of the current key (PyFlink's `ValueState`)."""

    def value(self) -> Any: ...
    def update(self, value: Any) -> None: ...
    def clear(self) -> None: ...


def event_time(watermark: float, forced: int | None) -> float:
    """A user's event time: the watermark, or the time idle forcing moved the user to if later."""
    return forced if forced is not None and forced > watermark else watermark


def is_late(ts: int, watermark: float, forced: int | None = None) -> bool:
    """Late: below the user's event time (an event at exactly the watermark is on time)."""
    return ts < watermark or (forced is not None and ts < forced)  # ts < event_time(...)


class ReplayWatermark:
    """The watermark of a replay in arrival order: `max_ts_seen - bound`, moved by each event.

    The backtest's whole notion of time, and file mode's lateness (decided as the backtest does).
    """

    __slots__ = ("bound_ms", "max_ts", "value")

    def __init__(self, bound_ms: int):
        self.bound_ms = bound_ms
        self.max_ts: int | None = None
        self.value: float = -END_OF_TIME

    def observe(self, ts: int) -> bool:
        """Take an event's ts (after deciding its lateness); True if the watermark moved."""
        if self.max_ts is None or ts > self.max_ts:
            self.max_ts = ts
            self.value = ts - self.bound_ms
            return True
        return False


def idle_force_due(
    wakeup: int, watermark_moved_at: int, input_seen_at: int, idle_fire_after_ms: int
) -> int:
    """The wall-clock ms from which a pending wakeup (event time) may be forced: once the input
    was idle (no element, no watermark move) and the wakeup passed, each for idle_fire_after."""
    # A watermark standing still is not enough: under backlog or backpressure it stands still
    # while elements keep coming, and forcing then would fire deadlines early and make later
    # events late. And with the JVM prefilter dropping records, a moving watermark is the only
    # sign of input.
    return max(wakeup, watermark_moved_at, input_seen_at) + idle_fire_after_ms


def spread_bucket_ends(engine: Engine) -> Callable[[str], int] | None:
    """The Flink operator's `activity_delay`: each user's bucket ends put off by a stable delay
    (udfs/timing.py), so the buckets of all users, aligned to the epoch, do not end in one burst
    of timers. None without activity buckets (no silence rule)."""
    if not engine.activity_bucket_ms:
        return None
    spread = bucket_end_spread(engine.activity_bucket_ms)
    return lambda user_id: bucket_end_delay(user_id, spread)


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class Counter:
    """A metric counter in memory, with the `inc` of Flink's."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    def inc(self, n: int = 1) -> None:
        self.count += n


class HostState:
    """A user's value in the host's state: the engine's UserState and the host's bookkeeping.

    `timer`, `ptimer`: the earliest registered event-time and processing-time timers, so an event
    that needs no earlier one registers nothing; `forced`: the event time idle forcing moved the
    user to (it keeps the state from being empty).

    Pickled as `(user, arrived, timer, ptimer, forced)`, where `user` is the UserState pickled
    on its own and left as bytes until `.user` is read. An event only buffered (`arrive`) goes to
    `arrived`, which `.user` merges into the engine's buffer: so an element, the most common
    access, pickles a few small values and copies the rest as bytes, however large the state of
    a busy user (hundreds of buffered events and sequence steps) has grown.
    """

    __slots__ = ("_user", "_blob", "arrived", "timer", "ptimer", "forced")

    def __init__(self, user: UserState | None = None) -> None:
        self._user = UserState() if user is None else user
        self._blob: bytes | None = None
        self.arrived: list[EngineEvent] = []
        self.timer: int | None = None
        self.ptimer: int | None = None
        self.forced: int | None = None

    @property
    def user(self) -> UserState:
        user = self._user
        if user is None:
            user = self._user = pickle.loads(self._blob)
            self._blob = None
        if self.arrived:
            for event in self.arrived:
                buffer_event(user.pending, event)
            self.arrived = []
        return user

    @user.setter
    def user(self, user: UserState) -> None:
        self._user, self._blob, self.arrived = user, None, []

    def arrive(self, event: EngineEvent) -> None:
        """Buffer an on-time event the engine will match (Engine.accept's buffering, deferred)."""
        self.arrived.append(event)

    def __getstate__(self) -> tuple:
        user = self._user
        blob = self._blob if user is None else pickle.dumps(user, pickle.HIGHEST_PROTOCOL)
        return (blob, events_as_tuples(self.arrived), self.timer, self.ptimer, self.forced)

    def __setstate__(self, state: tuple) -> None:
        self.timer, self.ptimer, self.forced = state[-3:]
        if len(state) == 5 and (state[0] is None or type(state[0]) is bytes):
            self._user, self._blob = None, state[0]
            self.arrived = events_from_tuples(state[1])
            return
        # The flat layout before (the user's fields, then timer, ptimer, forced).
        self._user, self._blob, self.arrived = UserState.__new__(UserState), None, []
        self._user.__setstate__(state[:-3])

    def is_empty(self) -> bool:
        return self.forced is None and self.user.is_empty()

    def __repr__(self) -> str:
        return (
            f"HostState({self.user!r}, timer={self.timer!r}, ptimer={self.ptimer!r}, "
            f"forced={self.forced!r})"
        )


NO_FIRES: tuple[list[Fire], int] = ([], 0)


class Host:
    """The engine hosted per user, what the Flink operator and the backtest share: one Host per
    operator instance, over a HostState per user in `state`. With `activity_delay` (the Flink
    operator's mode) activity is kept apart in `activity` as `(buckets, forced)` and wakes its
    user at its bucket's end plus the user's delay; without it (the reference) it stays in the
    UserState and wakes its user at ts + 1. With `idle_fire_after_ms`, a user's event time is
    forced to what is due once the input is idle (DESIGN.md's liveness)."""

    # Timers: the user's earliest Engine.wakeup is an event-time timer, kept in HostState.timer so
    # an event whose wakeup is not earlier registers nothing (each registration is a JVM call);
    # a timer that finds nothing due is stale and only re-registers. An activity event (most of a
    # stream with a silence rule) reads and writes only the small activity value, and nothing at
    # all when it is neither the first nor the last of its bucket.
    # Liveness: while something is due (Engine.due: a buffered event or a deadline, not activity
    # alone), one processing-time timer (HostState.ptimer). When it fires, the watermark has not
    # reached the due time T and the input is idle (idle_force_due), the user's event time is
    # forced to T (HostState.forced, kept in state so it survives restarts): the deadline fires
    # at its own trigger_ts and later events of this user below T are late.

    def __init__(
        self,
        engine: Engine,
        state: ValueState,
        activity: ValueState,
        *,
        activity_delay: Callable[[str], int] | None = None,
        idle_fire_after_ms: int | None = None,
        event_time_detected_at: bool = False,
        clock: Callable[[], int] = wall_clock_ms,
        counter: Callable[[str], Any] = lambda name: Counter(),
    ):
        self.engine = engine
        self.state = state
        self.activity = activity
        self.activity_delay = activity_delay
        self.idle_fire_after_ms = idle_fire_after_ms
        self.event_time_detected_at = event_time_detected_at
        self.clock = clock
        self.processed = counter("processed")
        self.late = counter("late")
        self.idle_forced = counter("idle_forced_advances")
        self.watermark_seen = MIN_WATERMARK
        self.event_time: float = MIN_WATERMARK
        self.watermark_moved_at = self.input_seen_at = clock()

    def on_event(self, ctx: TimerContext, key: str, event: EngineEvent) -> bool:
        """An event of the current user `key`: False if late, else kept (and timers registered)."""
        timers = ctx.timer_service()
        if self.idle_fire_after_ms:
            now = self.input_seen_at = self.clock()
            watermark = self._watermark(timers, now)
        else:  # only idle forcing needs the wall clock and when the watermark moved
            now, watermark = 0, timers.current_watermark()
        activity = self.engine.is_activity(event.event_type)
        if activity and self.activity_delay is not None:
            return self._on_activity(timers, key, event, watermark)
        host = self.state.value()
        if host is None:
            host = HostState()
        if is_late(event.ts, watermark, host.forced):
            self.late.inc()
            return False
        self.processed.inc()
        if activity:
            # Without activity_delay (the reference) activity stays in the UserState and wakes
            # its user at ts + 1 too.
            self.engine.accept(host.user, event)
        else:
            host.arrive(event)  # what Engine.accept does with it, without unpickling the user
        # The wakeup is now min(the old one, ts + 1), and a timer at or before the old one is
        # registered already (the invariant _register keeps): ts + 1 is all to offer.
        due = None if activity or not self.idle_fire_after_ms else event.ts + 1
        self._register(timers, host, event.ts + 1, due, now)
        self.state.update(host)
        return True

    def _on_activity(self, timers, key: str, event: EngineEvent, watermark: float) -> bool:
        """An activity event: only the activity value is read, and written only when the event
        is a new first or last of its bucket."""
        kept = self.activity.value()
        buckets, forced = kept if kept is not None else ({}, None)
        if is_late(event.ts, watermark, forced):
            self.late.inc()
            return False
        self.processed.inc()
        change = self.engine.add_activity(buckets, event)
        if change == NEW_BUCKET:
            # Activity needs no earlier wakeup than its bucket's end (udfs/engine.py), put off
            # per user (bucket_end_delay).
            end = self.engine.bucket_end(event.ts) + self.activity_delay(key)
            timers.register_event_time_timer(end)
        if change != UNCHANGED:
            self.activity.update((buckets, forced))
        return True

    def on_release(
        self,
        ctx: TimerContext,
        events: list[EngineEvent],
        watermark_to: int,
        watermark: float | None = None,
    ) -> tuple[list[int], list[Fire], int]:
        """Events of the current user (activity too) that the JVM held until the watermark passed
        them, released as it moves to `watermark_to` (udfs/jvm ReleaseOnWatermark), which reaches
        this operator right after them: each is kept unless late (below the user's forced time;
        the watermark here is still the one before, `watermark_now` when not given), then the
        user is matched up to `watermark_to`, as its event-time timer at ts + 1 (or its bucket's
        end) would match it once that watermark arrived. Returns the indexes of the late events,
        the fires and their detected_at (as `on_timer`)."""
        now = self.clock()
        timers = ctx.timer_service()
        if watermark is None:
            watermark = self._watermark(timers, now)
        if self.idle_fire_after_ms:
            self.input_seen_at = now
        host, had_activity = self._load()
        if host is None:
            host = HostState()
        late, user, accept = [], host.user, self.engine.accept
        for index, event in enumerate(events):
            if is_late(event.ts, watermark, host.forced):
                late.append(index)
            else:
                accept(user, event)  # activity too: matched below, its bucket dropped
        if late:
            self.late.inc(len(late))
        if len(late) < len(events):
            self.processed.inc(len(events) - len(late))
        if host.timer is not None and host.timer <= watermark_to:
            # What it was for is done here: its callback would only find nothing due.
            timers.delete_event_time_timer(host.timer)
            host.timer = None
        self.event_time = max(watermark, watermark_to)
        key = ctx.get_current_key() if self.engine.rollout.partial else None
        fires = self._event_timer(host, watermark_to, watermark, key)
        detected_at = max(watermark_to, 0) if self.event_time_detected_at else now
        self.event_time = event_time(self.event_time, host.forced)
        self._store(ctx, timers, host, now, had_activity)
        return late, fires, detected_at

    def on_timer(self, ctx: TimerContext, timestamp: int) -> tuple[list[Fire], int]:
        """A timer of the current user fired: the fires, and their detected_at (wall-clock ms,
        or with `event_time_detected_at` the event-time timer's time)."""
        now = self.clock()
        timers = ctx.timer_service()
        watermark = self._watermark(timers, now)
        event_timer = ctx.time_domain().value == _EVENT_TIME
        # The user's event time after this callback: every fire with a trigger_ts below it is
        # out (what the campaign step may decide on; udfs/campaign/fate.py).
        self.event_time = max(watermark, timestamp) if event_timer else watermark
        host, had_activity = self._load()
        if host is None:
            return NO_FIRES
        key = ctx.get_current_key() if self.engine.rollout.partial else None
        if event_timer:
            fires = self._event_timer(host, timestamp, watermark, key)
            detected_at = max(timestamp, 0) if self.event_time_detected_at else now
        else:
            fires = self._processing_timer(timers, host, timestamp, watermark, now, key)
            detected_at = now
        self.event_time = event_time(self.event_time, host.forced)
        self._store(ctx, timers, host, now, had_activity)
        return fires, detected_at

    def _event_timer(self, host: HostState, timestamp: int, watermark: float, key) -> list[Fire]:
        recorded = host.timer == timestamp
        if host.timer is not None and host.timer <= timestamp:
            host.timer = None
        # The timer firing proves the watermark reached its time, whatever the runtime reports.
        advance_to = event_time(max(watermark, timestamp), host.forced)
        if not recorded:
            # A superseded or bucket-end timer: work only if something is due.
            wakeup = self.engine.wakeup(host.user)
            if wakeup is None or wakeup > advance_to:
                return []  # stale: _store re-registers what is needed
        return self.engine.advance(host.user, advance_to, key)

    def _processing_timer(
        self, timers, host: HostState, timestamp: int, watermark: float, now: int, key
    ) -> list[Fire]:
        """Idle forcing, step by step in this one call while the next due time is also eligible:
        once idle, every deadline and buffered event already past its time resolves now (one
        step per idle_fire_after would strand a user with many buffered events)."""
        if host.ptimer is not None and host.ptimer <= timestamp:
            host.ptimer = None
        engine, user, idle = self.engine, host.user, self.idle_fire_after_ms
        watermark = event_time(watermark, host.forced)
        due = engine.due(user)
        fires: list[Fire] = []
        # Nothing due, or due at or before the watermark: the event-time timer does it.
        while idle and due is not None and due > watermark:
            force_at = idle_force_due(due, self.watermark_moved_at, self.input_seen_at, idle)
            if now < force_at:
                host.ptimer = round_up(force_at)
                timers.register_processing_time_timer(host.ptimer)
                break
            self.idle_forced.inc()
            host.forced = watermark = due
            fires += engine.advance(user, due, key)
            due = engine.due(user)
        return fires

    def watermark_now(self, ctx: TimerContext) -> float:
        """The operator's watermark now (noting when it moved, for idle forcing)."""
        return self._watermark(ctx.timer_service(), self.clock())

    def _watermark(self, timers, now: int) -> float:
        watermark = timers.current_watermark()
        if watermark != self.watermark_seen:
            self.watermark_seen = watermark
            self.watermark_moved_at = now
        return watermark

    def _load(self) -> tuple[HostState | None, bool]:
        """The user's HostState with its activity, and whether an activity value was stored."""
        host = self.state.value()
        kept = self.activity.value() if self.activity_delay is not None else None
        if kept is not None and kept[0]:
            if host is None:
                host = HostState()
            host.user.activity = kept[0]
        return host, kept is not None

    def _store(self, ctx, timers, host: HostState, now: int, had_activity: bool) -> None:
        """After a timer: each value written, or cleared when empty (timers still registered find
        no state and do nothing); what the state needs next is registered. `had_activity`: an
        activity value was stored (clearing none is a JVM call for nothing)."""
        split = self.activity_delay is not None
        if split:
            activity = host.user.activity
            if activity or host.forced is not None:
                self.activity.update((activity, host.forced))
            elif had_activity:
                self.activity.clear()
        if host.is_empty():
            self._drop_ptimer(timers, host)
            self.state.clear()
            return
        self._schedule(ctx, timers, host, now)
        if split:
            host.user.activity = {}
            if host.is_empty():
                self._drop_ptimer(timers, host)
                self.state.clear()  # only activity: it has its own value and bucket-end timers
                return
        self.state.update(host)

    def _schedule(self, ctx, timers, host: HostState, now: int) -> None:
        user = host.user
        delay = 0
        if user.activity and self.activity_delay is not None:
            delay = self.activity_delay(ctx.get_current_key())
        due = self.engine.due(user) if self.idle_fire_after_ms else None
        if host.ptimer is not None and (due is None or host.ptimer < self._force_from(due)):
            # The registered processing-time timer can force nothing at its time (most often it
            # was for a buffered event the watermark has passed since): it would fire only to
            # re-register, a Python call per event. Deleted; _register sets the one needed now.
            self._drop_ptimer(timers, host)
        self._register(timers, host, self.engine.wakeup(user, delay), due, now)

    def _force_from(self, due: int) -> int:
        """The earliest processing-time timer that could force `due`, as the input stands."""
        idle = self.idle_fire_after_ms
        return round_up(idle_force_due(due, self.watermark_moved_at, self.input_seen_at, idle))

    @staticmethod
    def _drop_ptimer(timers, host: HostState) -> None:
        if host.ptimer is not None:
            timers.delete_processing_time_timer(host.ptimer)
            host.ptimer = None

    def _register(self, timers, host: HostState, wakeup, due, now: int) -> None:
        """Register a timer for `wakeup` unless one at or before it is registered, and for `due`
        a processing-time timer `idle_fire_after_ms` past it, moved earlier when something earlier
        is due (a later one left in place would delay this deadline to its time)."""
        if wakeup is not None and (host.timer is None or wakeup < host.timer):
            timers.register_event_time_timer(wakeup)
            host.timer = wakeup
        if due is not None:
            at = round_up(max(now, due) + self.idle_fire_after_ms)
            if host.ptimer is None or at < host.ptimer:
                timers.register_processing_time_timer(at)
                host.ptimer = at


class MemoryTimerService:
    """Flink's timer service and timer context in memory, for the backtest and for tests.

    The watermark and the wall clock are moved by hand; each move yields the timers it passes one
    at a time, in (time, key) order, with the current key and time domain set, as Flink fires them
    (a timer is registered once per key and time; one registered while firing may fire too).
    `replace`: a key has one event-time timer, each registration replacing the last (the
    reference backtest's bookkeeping, cheaper; Flink keeps and fires every timer).
    """

    def __init__(self, watermark: float = MIN_WATERMARK, now: int = 0, replace: bool = False):
        self.watermark = watermark
        self.now = now
        self.key: str | None = None
        self.domain = TimeDomain.EVENT_TIME
        # (heap, registered) per domain; plain attributes, as enum hashing is slow in the backtest
        self._event: tuple[list, set] = ([], set())
        self._processing: tuple[list, set] = ([], set())
        self._latest: dict[str, int] | None = {} if replace else None

    def timer_service(self) -> MemoryTimerService:
        return self

    def get_current_key(self) -> str | None:
        return self.key

    def set_current_key(self, key: str) -> None:
        """State and timers from now on are `key`'s (Flink's keyed state backend's)."""
        self.key = key

    def time_domain(self) -> TimeDomain:
        return self.domain

    def current_watermark(self) -> float:
        return self.watermark

    def current_processing_time(self) -> int:
        return self.now

    def register_event_time_timer(self, timestamp: int) -> None:
        if self._latest is not None:
            self._latest[self.key] = timestamp
        self._register(self._event, timestamp)

    def register_processing_time_timer(self, timestamp: int) -> None:
        self._register(self._processing, timestamp)

    def delete_event_time_timer(self, timestamp: int) -> None:
        """Flink's: the current key's event-time timer at `timestamp` will not fire."""
        if self._latest is not None and self._latest.get(self.key) == timestamp:
            del self._latest[self.key]
        self._delete(self._event, timestamp)

    def delete_processing_time_timer(self, timestamp: int) -> None:
        """Flink's: the current key's timer at `timestamp` will not fire (none: nothing)."""
        self._delete(self._processing, timestamp)

    def _delete(self, timers: tuple[list, set], timestamp: int) -> None:
        # Left in the heap (removing it is O(n)); `_fire` skips what is no longer registered.
        timers[1].discard((timestamp, self.key))

    def _register(self, timers: tuple[list, set], timestamp: int) -> None:
        heap, registered = timers
        entry = (timestamp, self.key)
        if entry not in registered:
            registered.add(entry)
            heapq.heappush(heap, entry)

    def timers(self, domain: TimeDomain = TimeDomain.EVENT_TIME) -> list[tuple[int, str]]:
        """The registered timers not fired yet, as sorted (time, key)."""
        timers = self._event if domain is TimeDomain.EVENT_TIME else self._processing
        return sorted(timers[1])

    def advance_watermark(self, watermark: float) -> Iterator[int]:
        """Move the watermark to `watermark`; yield each event-time timer it passes."""
        self.watermark = watermark
        return self._fire(TimeDomain.EVENT_TIME, self._event, watermark)

    def advance_clock(self, now: int) -> Iterator[int]:
        """Move the wall clock to `now`; yield each processing-time timer it passes."""
        self.now = now
        return self._fire(TimeDomain.PROCESSING_TIME, self._processing, now)

    def _fire(self, domain: TimeDomain, timers: tuple[list, set], limit: float) -> Iterator[int]:
        heap, registered = timers
        latest = self._latest if domain is TimeDomain.EVENT_TIME else None
        while heap and heap[0][0] <= limit:
            entry = heapq.heappop(heap)
            if entry not in registered:
                continue  # deleted
            registered.discard(entry)
            if latest is not None:
                if latest.get(entry[1]) != entry[0]:
                    continue  # replaced
                del latest[entry[1]]
            self.key, self.domain = entry[1], domain
            yield entry[0]


class MemoryState:
    """Flink's ValueState in memory: a value per key of `service`. With `pickled`, values are
    kept as bytes, as Flink keeps PICKLED_BYTE_ARRAY state, so a change not written back is lost
    here as it would be there."""

    def __init__(self, service: MemoryTimerService, pickled: bool = False):
        self.service = service
        self.pickled = pickled
        self.values: dict[str, Any] = {}

    def value(self) -> Any:
        value = self.values.get(self.service.key)
        return pickle.loads(value) if self.pickled and value is not None else value

    def update(self, value: Any) -> None:
        self.values[self.service.key] = pickle.dumps(value) if self.pickled else value

    def clear(self) -> None:
        self.values.pop(self.service.key, None)
