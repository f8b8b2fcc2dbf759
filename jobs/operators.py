"""The Python operators of the detection job: decode (bad records out), the engine host (keyed
state, timers, late events out) and the output rows every sink understands.

Records between operators: a decoded event is `(user_id, EngineEvent, raw)`; an output row is
`Row(kind, key, value)` with kind `action`, `late` or `dlq` and value the JSON text.
"""

from __future__ import annotations

import json
import time
import zlib

from pyflink.common import Row
from pyflink.common.time import Time
from pyflink.common.typeinfo import Types
from pyflink.common.watermark_strategy import TimestampAssigner
from pyflink.datastream import KeyedProcessFunction, OutputTag, ProcessFunction, TimeDomain
from pyflink.datastream.state import StateTtlConfig, ValueStateDescriptor

from schemas.event import Event
from schemas.rules import Rule
from udfs.actions import build_action
from udfs.decode import InvalidEvent, dead_letter_json, decode_event, raw_text
from udfs.engine import NEW_BUCKET, UNCHANGED, Engine, UserState
from udfs.model import EngineEvent

KIND_ACTION, KIND_LATE, KIND_DLQ = "action", "late", "dlq"
OUTPUT_ROW = Types.ROW_NAMED(
    ["kind", "key", "value"], [Types.STRING(), Types.STRING(), Types.STRING()]
)
DLQ_TAG = OutputTag("dead-letter", OUTPUT_ROW)
LATE_TAG = OutputTag("late-events", OUTPUT_ROW)

# Flink's watermark before any arrives, and after the end of a bounded input.
MIN_WATERMARK = -(2**63)
MAX_WATERMARK = 2**63 - 1


def _decode_raw(raw: bytes | str) -> Event | str:
    """A raw record by the event contract: the Event, or the reason it is not one."""
    try:
        return decode_event(raw)
    except InvalidEvent as error:
        return error.reason
    except Exception as error:  # noqa: BLE001 - bad input must never fail the job
        return f"undecodable: {type(error).__name__}: {error}"


class DecodeEvents(ProcessFunction):
    """Raw JSON -> `(user_id, EngineEvent, raw)`; a record failing the contract goes to DLQ_TAG.

    Input is a line of the events file (`source` names it; the offset is the 1-based line number,
    so this operator runs at parallelism 1). Kafka mode has no such operator: records are decoded
    in the JVM, or by DetectMoments itself (`decode_rows`).

    `replay_lateness_ms`: in file mode, decide lateness here exactly as the backtest does (an
    event is late iff its ts is below max_ts_seen - bound, in file order). Flink's periodic
    watermark lags that rule, so without it a file run could accept events the backtest calls
    late; with it, file mode and the backtest agree on every input.
    """

    def __init__(self, source: str, replay_lateness_ms: int | None = None):
        self.source = source
        self.replay_lateness_ms = replay_lateness_ms

    def open(self, runtime_context) -> None:
        self.line = 0
        self.max_ts: int | None = None
        metrics = runtime_context.get_metrics_group()
        self.events_in = metrics.counter("events_in")
        self.invalid = metrics.counter("invalid")

    def process_element(self, value: str, ctx):
        self.line += 1
        if not value.strip():
            return  # blank lines are not records (the backtest skips them too)
        raw = value
        self.events_in.inc()
        event = _decode_raw(raw)
        if isinstance(event, str):
            self.invalid.inc()
            where = {"source": self.source, "offset": self.line}
            yield DLQ_TAG, Row(KIND_DLQ, None, dead_letter_json(raw, event, **where))
            return
        if self.replay_lateness_ms is not None:
            max_ts = self.max_ts
            if max_ts is not None and event.ts < max_ts - self.replay_lateness_ms:
                yield LATE_TAG, Row(KIND_LATE, event.user_id, raw)
                return
            if max_ts is None or event.ts > max_ts:
                self.max_ts = event.ts
        yield event.user_id, EngineEvent.from_event(event), raw


class EventTimeOf(TimestampAssigner):
    def extract_timestamp(self, value, record_timestamp: int) -> int:
        return value[1].ts


class DetectMoments(KeyedProcessFunction):
    """Hosts the rule engine per user: state in keyed state, deadlines as event-time timers.

    Timers: the user's earliest `Engine.wakeup` is registered as an event-time timer, and kept in
    the state (`UserState.timer`) so an event whose wakeup is not earlier registers nothing; an
    activity event between the first and last of its bucket changes nothing and is not even
    written back. A timer that finds `wakeup > watermark` is stale and only re-registers.

    Liveness (`idle_fire_after_ms`): while the user has something due (`Engine.due`: a buffered
    event or a deadline, not activity alone), one processing-time timer is kept (`ptimer`). When
    it fires and the watermark has not reached the due time T, and the input of this subtask is
    idle (see `idle_force_due`: for `idle_fire_after_ms` of wall-clock time no element arrived and
    the watermark did not move), and wall-clock time is past T + idle_fire_after_ms, this user's
    event time is forced to T: the engine advances to T (the deadline fires at its own
    trigger_ts) and later events of this user below T are late. The forced time is kept in the
    user's state, so it survives restarts.

    detected_at: wall-clock ms (`event_time_detected_at` False) or the event time at which the
    engine detected the fire (the timer's time, at least trigger_ts) for file replays.
    """

    def __init__(
        self,
        rules: list[Rule],
        state_ttl_ms: int,
        idle_fire_after_ms: int | None = None,
        event_time_detected_at: bool = False,
        emit_json: bool = True,
        decode_rows: bool = False,
    ):
        self.rules = rules
        self.state_ttl_ms = state_ttl_ms
        self.idle_fire_after_ms = idle_fire_after_ms
        self.event_time_detected_at = event_time_detected_at
        self.emit_json = emit_json
        self.decode_rows = decode_rows

    def open(self, runtime_context) -> None:
        self.engine = Engine(self.rules)
        ttl = (
            StateTtlConfig.new_builder(Time.milliseconds(self.state_ttl_ms))
            .set_update_type(StateTtlConfig.UpdateType.OnCreateAndWrite)
            .set_state_visibility(StateTtlConfig.StateVisibility.NeverReturnExpired)
            # The TTL is a safety net (empty state is cleared): no per-access cleanup work on
            # the heap backend (profiled: ~15% of the operator's JVM time); checkpoints and
            # reads still drop expired entries.
            .disable_cleanup_in_background()
            .cleanup_full_snapshot()
            .build()
        )
        descriptor = ValueStateDescriptor("engine", Types.PICKLED_BYTE_ARRAY())
        descriptor.enable_time_to_live(ttl)
        self.state = runtime_context.get_state(descriptor)
        # UserState.activity is kept apart, as (buckets, forced): an activity event (most of a
        # stream with a silence rule) reads and writes only this small value, not the user's
        # buffered events and rule state. `forced` is a copy of UserState.forced for its
        # lateness check.
        activity = ValueStateDescriptor("activity", Types.PICKLED_BYTE_ARRAY())
        activity.enable_time_to_live(ttl)
        self.activity_state = runtime_context.get_state(activity)
        self.watermark_seen = MIN_WATERMARK
        self.watermark_moved_at = _now_ms()
        self.input_seen_at = self.watermark_moved_at
        metrics = runtime_context.get_metrics_group()
        if self.decode_rows:
            self.events_in = metrics.counter("events_in")
            self.invalid = metrics.counter("invalid")
        self.processed = metrics.counter("processed")
        self.late = metrics.counter("late")
        self.idle_fires = metrics.counter("idle_forced_advances")
        self.actions = {
            rule.id: metrics.add_group("rule", rule.id).counter("actions") for rule in self.rules
        }

    def _watermark(self, ctx) -> int:
        watermark = ctx.timer_service().current_watermark()
        if watermark != self.watermark_seen:
            self.watermark_seen = watermark
            self.watermark_moved_at = _now_ms()
        return watermark

    def process_element(self, value, ctx):
        if self.decode_rows:
            user_id, raw = value[0], value[1]
            self.events_in.inc()
            event = self._decode(value)
            if not isinstance(event, EngineEvent):
                self.invalid.inc()
                where = {"topic": value[2], "partition": value[3], "offset": value[4]}
                yield DLQ_TAG, Row(KIND_DLQ, None, dead_letter_json(raw, event, **where))
                return
        else:
            user_id, event, raw = value
        now = self.input_seen_at = _now_ms()
        watermark = self._watermark(ctx)
        if self.engine.is_activity(event.event_type):
            yield from self._activity(ctx, user_id, event, raw, watermark)
            return
        state = self.state.value()
        if state is None:
            state = UserState()
        elif state.forced is not None and state.forced > watermark:
            watermark = state.forced
        changed = self.engine.accept_changed(state, event, watermark)
        if changed is None:
            self.late.inc()
            yield LATE_TAG, Row(KIND_LATE, user_id, raw_text(raw))
            return
        self.processed.inc()
        if changed:
            self._schedule(ctx, state, now)
            self.state.update(state)

    def _activity(self, ctx, user_id, event: EngineEvent, raw, watermark: int):
        """An activity event (Engine.is_activity): only the activity state is read, and written
        only when the event is a new first or last of its bucket."""
        kept = self.activity_state.value()
        buckets, forced = kept if kept is not None else ({}, None)
        if forced is not None and forced > watermark:
            watermark = forced
        if event.ts < watermark:
            self.late.inc()
            yield LATE_TAG, Row(KIND_LATE, user_id, raw_text(raw))
            return
        self.processed.inc()
        change = self.engine.add_activity(buckets, event)
        if change == NEW_BUCKET:
            # Activity needs no earlier wakeup than its bucket's end (udfs/engine.py), spread
            # per user (bucket_end_delay).
            end = self.engine.bucket_end(event.ts) + bucket_end_delay(user_id, self.engine)
            ctx.timer_service().register_event_time_timer(end)
        if change != UNCHANGED:
            self.activity_state.update((buckets, forced))

    def _load(self) -> UserState | None:
        state = self.state.value()
        kept = self.activity_state.value()
        if kept is not None and kept[0]:
            if state is None:
                state = UserState()
            state.activity = kept[0]
        return state

    @staticmethod
    def _decode(row) -> EngineEvent | str:
        """A keyed payload row (jobs.sources.kafka_keyed_records) -> EngineEvent, or the reason
        it is not a valid event. Decoded in SQL when certainly valid, else by the contract's
        decoder, which must also read the user_id the stream is keyed by."""
        if row[5]:
            properties = row[10]
            return EngineEvent(
                row[8],
                row[6],
                row[7],
                row[9],
                {} if properties is None or properties == "{}" else json.loads(properties),
            )
        event = _decode_raw(row[1])
        if isinstance(event, str):
            return event
        if event.user_id != row[0]:
            return "user_id: read differently by Flink SQL (the stream's key) and the decoder"
        return EngineEvent.from_event(event)

    def _schedule(self, ctx, state: UserState, now: int) -> None:
        """Register what the state needs and is not registered yet (see the class doc)."""
        delay = bucket_end_delay(ctx.get_current_key(), self.engine) if state.activity else 0
        wakeup = self.engine.wakeup(state, delay)
        if wakeup is not None and (state.timer is None or wakeup < state.timer):
            ctx.timer_service().register_event_time_timer(wakeup)
            state.timer = wakeup
        if self.idle_fire_after_ms:
            due = self.engine.due(state)
            if due is not None:
                at = _round_up(max(now, due) + self.idle_fire_after_ms)
                # One outstanding timer per user, moved earlier when something earlier is due
                # (a later one left in place would delay this deadline to its time).
                if state.ptimer is None or at < state.ptimer:
                    self._register_ptimer(ctx, state, at)

    @staticmethod
    def _register_ptimer(ctx, state: UserState, at: int) -> None:
        ctx.timer_service().register_processing_time_timer(at)
        state.ptimer = at

    def on_timer(self, timestamp: int, ctx):
        watermark = self._watermark(ctx)
        state = self._load()
        if state is None:
            return
        now = _now_ms()
        if ctx.time_domain() == TimeDomain.PROCESSING_TIME:
            if state.ptimer is not None and state.ptimer <= timestamp:
                state.ptimer = None
            due = self.engine.due(state)
            if state.forced is not None and state.forced > watermark:
                watermark = state.forced
            if due is None or due <= watermark:
                # Nothing due, or the event-time timer does it (and re-arms this one).
                self._store(ctx, state, now)
                return
            # Forced step by step, in this one call, while the next due time is also eligible:
            # once idle, every deadline and buffered event already past its time resolves now
            # (one step per idle_fire_after would strand a user with many buffered events).
            fires = []
            while due is not None and due > watermark:
                force_at = idle_force_due(
                    due, self.watermark_moved_at, self.input_seen_at, self.idle_fire_after_ms
                )
                if now < force_at:
                    self._register_ptimer(ctx, state, _round_up(force_at))
                    break
                self.idle_fires.inc()
                state.forced = watermark = due
                fires += self.engine.advance(state, due)
                due = self.engine.due(state)
            if fires:
                yield from self._emit(ctx, fires, now)
            self._store(ctx, state, now)
            return
        else:
            if state.timer is not None and state.timer <= timestamp:
                state.timer = None
            # The timer firing proves the watermark reached its time, whatever the runtime reports.
            advance_to = max(watermark, timestamp)
            if state.forced is not None and state.forced > advance_to:
                advance_to = state.forced
            wakeup = self.engine.wakeup(state)
            if wakeup is None or wakeup > advance_to:
                self._store(ctx, state, now)  # stale: re-register what is needed
                return
            detected_at = max(timestamp, 0) if self.event_time_detected_at else now
        fires = self.engine.advance(state, advance_to)
        if fires:
            yield from self._emit(ctx, fires, detected_at)
        self._store(ctx, state, now)

    def _emit(self, ctx, fires, detected_at: int):
        user_id = ctx.get_current_key()
        for fire in fires:
            rule = self.engine.by_id[fire.rule_id]
            self.actions[fire.rule_id].inc()
            action = build_action(rule, user_id, fire, max(detected_at, fire.trigger_ts))
            if self.emit_json:
                yield Row(KIND_ACTION, user_id, action.to_json_bytes().decode())
            else:
                yield action

    def _store(self, ctx, state: UserState, now: int) -> None:
        """After a timer: both values, each cleared when empty (timers still registered find
        no state and do nothing)."""
        activity = state.activity
        if activity or state.forced is not None:
            self.activity_state.update((activity, state.forced))
        else:
            self.activity_state.clear()
        if state.is_empty():
            self.state.clear()
            return
        self._schedule(ctx, state, now)
        state.activity = {}
        if state.is_empty():
            self.state.clear()  # only activity: it has its own value and bucket-end timers
            return
        self.state.update(state)


def idle_force_due(
    wakeup: int, watermark_moved_at: int, input_seen_at: int, idle_fire_after_ms: int
) -> int:
    """The wall-clock ms from which a pending wakeup (event time) may be forced, all in ms.

    Forcing is for an idle input only. A watermark standing still is not enough: under backlog or
    backpressure it stands still too while elements keep coming, and forcing then fires deadlines
    early and makes later events late. So the subtask must also have received no element for
    `idle_fire_after_ms` (`input_seen_at`: the last one), and the watermark must not have moved
    for as long (`watermark_moved_at`: with the JVM prefilter dropping records, a moving watermark
    is the only sign of input). And wall-clock must be past the deadline by as much.
    """
    return max(wakeup, watermark_moved_at, input_seen_at) + idle_fire_after_ms


# Activity buckets are aligned to the epoch, so every user with activity in a bucket would have
# a timer at its end: thousands of Python callbacks in one burst that held up every other event
# for hundreds of ms (seen in the live benchmark at each bucket end). Each user's bucket-end
# wakeup is put off by a stable per-user delay below this (and below the bucket's length);
# dropping a bucket later changes no match (Engine.wakeup).
BUCKET_END_SPREAD_MS = 10_000


def bucket_end_spread(engine: Engine) -> int:
    return min(BUCKET_END_SPREAD_MS, engine.activity_bucket_ms)


def bucket_end_delay(user_id: str, engine: Engine) -> int:
    """The delay of this user's bucket-end wakeups: stable, in [0, bucket_end_spread)."""
    return zlib.crc32(user_id.encode()) % bucket_end_spread(engine)


def _round_up(ms: int) -> int:
    """Processing-time timers on 100 ms steps: a busy user registers few distinct ones."""
    return ms - ms % 100 + 100


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class _EnrichmentMetrics:
    """enrich.{ok,missing,unavailable}, enrich.cache_hits and enrich.crm_latency_ms (the latest
    lookup, a gauge) plus enrich.crm_latency_ms_total (sum, for averages across subtasks)."""

    def __init__(self, runtime_context):
        metrics = runtime_context.get_metrics_group()
        self.outcomes = {s: metrics.counter(s) for s in ("ok", "missing", "unavailable")}
        self.cache_hits = metrics.counter("cache_hits")
        self.latency_total = metrics.counter("crm_latency_ms_total")
        self.last_latency_ms = 0
        metrics.gauge("crm_latency_ms", lambda: int(self.last_latency_ms))

    def record(self, result) -> None:
        self.outcomes[result.status].inc()
        if result.cached:
            self.cache_hits.inc()
        self.last_latency_ms = result.latency_ms
        self.latency_total.inc(int(result.latency_ms))


def _enriched_row(action, result) -> Row:
    from udfs.enrich import enrich

    enriched = enrich(action, result)
    return Row(KIND_ACTION, enriched.user_id, enriched.to_json_bytes().decode())


class EnrichActions(ProcessFunction):
    """Action -> Row with the CRM profile: a cached, time-bounded synchronous lookup.

    Blocking is bounded by the CRM settings' timeout (retries included) and only actions pass here,
    a small fraction of events; a CRM that is down or slow gives `enrichment: unavailable`, an
    unknown user `missing`, and the action is always emitted.
    """

    def __init__(self, crm_settings):
        self.crm_settings = crm_settings

    def open(self, runtime_context) -> None:
        from udfs.crm import build_lookup

        self.lookup = build_lookup(self.crm_settings)
        self.metrics = _EnrichmentMetrics(runtime_context)

    def process_element(self, action, ctx):
        result = self.lookup.lookup(action.user_id)
        self.metrics.record(result)
        yield _enriched_row(action, result)

    def close(self) -> None:
        if getattr(self, "lookup", None) is not None:
            self.lookup.close()


def async_enrich_function(crm_settings):
    """The same enrichment as an AsyncFunction (PyFlink's AsyncDataStream; process mode only)."""
    from pyflink.datastream.functions import AsyncFunction

    class AsyncEnrichActions(AsyncFunction):
        def __init__(self, settings):
            self.crm_settings = settings

        def open(self, runtime_context) -> None:
            from udfs.crm import build_lookup

            self.lookup = build_lookup(self.crm_settings)
            self.metrics = _EnrichmentMetrics(runtime_context)

        async def async_invoke(self, action):
            result = await self.lookup.alookup(action.user_id)
            self.metrics.record(result)
            return [_enriched_row(action, result)]

        def timeout(self, action):
            from udfs.crm import LookupResult

            result = LookupResult("unavailable", reason="flink async timeout")
            self.metrics.record(result)
            return [_enriched_row(action, result)]

        def close(self) -> None:
            if getattr(self, "lookup", None) is not None:
                self.lookup.close()

    return AsyncEnrichActions(crm_settings)
