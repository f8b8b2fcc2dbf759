"""The Python operators of the detection job: decode (bad records out), the engine host (keyed
state, timers, late events out) and the output rows every sink understands.

Records between operators: a decoded event is `(user_id, EngineEvent, raw)`; an output row is
`Row(kind, key, value)` with kind `action`, `late` or `dlq` and value the JSON text.
"""

from __future__ import annotations

import json
import time

from pyflink.common import Row
from pyflink.common.time import Time
from pyflink.common.typeinfo import Types
from pyflink.common.watermark_strategy import TimestampAssigner
from pyflink.datastream import KeyedProcessFunction, OutputTag, ProcessFunction
from pyflink.datastream.state import StateTtlConfig, ValueStateDescriptor

from schemas.event import Event
from schemas.rules import Rule
from udfs.actions import build_action
from udfs.decode import (
    DEFAULT_MAX_FUTURE_MS,
    InvalidEvent,
    dead_letter_json,
    decode_event,
    raw_text,
)
from udfs.engine import Engine
from udfs.host import Host, ReplayWatermark, is_late, spread_bucket_ends
from udfs.model import EngineEvent

KIND_ACTION, KIND_LATE, KIND_DLQ = "action", "late", "dlq"
OUTPUT_ROW = Types.ROW_NAMED(
    ["kind", "key", "value"], [Types.STRING(), Types.STRING(), Types.STRING()]
)
DLQ_TAG = OutputTag("dead-letter", OUTPUT_ROW)
LATE_TAG = OutputTag("late-events", OUTPUT_ROW)


def _decode_raw(raw: bytes | str, max_future_ms: int | None = DEFAULT_MAX_FUTURE_MS) -> Event | str:
    """A raw record by the event contract and its guard rails (now: wall-clock time): the Event,
    or the reason it is not one."""
    try:
        return decode_event(raw, _now_ms(), max_future_ms)
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

    def __init__(
        self,
        source: str,
        replay_lateness_ms: int | None = None,
        max_future_ms: int | None = DEFAULT_MAX_FUTURE_MS,
    ):
        self.source = source
        self.replay_lateness_ms = replay_lateness_ms
        self.max_future_ms = max_future_ms

    def open(self, runtime_context) -> None:
        self.line = 0
        lateness = self.replay_lateness_ms
        self.replay_watermark = None if lateness is None else ReplayWatermark(lateness)
        metrics = runtime_context.get_metrics_group()
        self.events_in = metrics.counter("events_in")
        self.invalid = metrics.counter("invalid")

    def process_element(self, value: str, ctx):
        self.line += 1
        if not value.strip():
            return  # blank lines are not records (the backtest skips them too)
        raw = value
        self.events_in.inc()
        event = _decode_raw(raw, self.max_future_ms)
        if isinstance(event, str):
            self.invalid.inc()
            where = {"source": self.source, "offset": self.line}
            yield DLQ_TAG, Row(KIND_DLQ, None, dead_letter_json(raw, event, **where))
            return
        replay = self.replay_watermark
        if replay is not None:
            if is_late(event.ts, replay.value):
                yield LATE_TAG, Row(KIND_LATE, event.user_id, raw)
                return
            replay.observe(event.ts)
        yield event.user_id, EngineEvent.from_event(event), raw


class EventTimeOf(TimestampAssigner):
    def extract_timestamp(self, value, record_timestamp: int) -> int:
        return value[1].ts


class DetectMoments(KeyedProcessFunction):
    """The rule engine per user in Flink: udfs/host.py's Host over keyed state and Flink's timers.

    Keyed state: "engine" holds a HostState per user and "activity" its activity buckets with the
    idle-forced time, `(buckets, forced)`, apart; both are pickled (a change of their layout
    needs a fresh start, not a restore). Late events go to LATE_TAG; with `decode_rows`, records
    are decoded here and invalid ones go to DLQ_TAG. detected_at: wall-clock ms, or for file
    replays (`event_time_detected_at`) the event time of the timer that fired.
    """

    def __init__(
        self,
        rules: list[Rule],
        state_ttl_ms: int,
        idle_fire_after_ms: int | None = None,
        event_time_detected_at: bool = False,
        emit_json: bool = True,
        decode_rows: bool = False,
        max_future_ms: int | None = DEFAULT_MAX_FUTURE_MS,
    ):
        self.rules = rules
        self.max_future_ms = max_future_ms
        self.state_ttl_ms = state_ttl_ms
        self.idle_fire_after_ms = idle_fire_after_ms
        self.event_time_detected_at = event_time_detected_at
        self.emit_json = emit_json
        self.decode_rows = decode_rows

    def open(self, runtime_context) -> None:
        engine = self.engine = Engine(self.rules)
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
        states = []
        for name in ("engine", "activity"):
            descriptor = ValueStateDescriptor(name, Types.PICKLED_BYTE_ARRAY())
            descriptor.enable_time_to_live(ttl)
            states.append(runtime_context.get_state(descriptor))
        metrics = runtime_context.get_metrics_group()
        self.host = Host(
            engine,
            *states,
            activity_delay=spread_bucket_ends(engine),
            idle_fire_after_ms=self.idle_fire_after_ms,
            event_time_detected_at=self.event_time_detected_at,
            counter=metrics.counter,
        )
        if self.decode_rows:
            self.events_in = metrics.counter("events_in")
            self.invalid = metrics.counter("invalid")
        self.actions = {
            rule.id: metrics.add_group("rule", rule.id).counter("actions") for rule in self.rules
        }

    def process_element(self, value, ctx):
        if self.decode_rows:
            user_id, raw = value[0], value[1]
            self.events_in.inc()
            event = self._decode(value, self.max_future_ms)
            if not isinstance(event, EngineEvent):
                self.invalid.inc()
                where = {"topic": value[2], "partition": value[3], "offset": value[4]}
                yield DLQ_TAG, Row(KIND_DLQ, None, dead_letter_json(raw, event, **where))
                return
        else:
            user_id, event, raw = value
        if not self.host.on_event(ctx, user_id, event):
            yield LATE_TAG, Row(KIND_LATE, user_id, raw_text(raw))

    def on_timer(self, timestamp: int, ctx):
        fires, detected_at = self.host.on_timer(ctx, timestamp)
        if not fires:
            return
        user_id = ctx.get_current_key()
        for fire in fires:
            rule = self.engine.by_id[fire.rule_id]
            self.actions[fire.rule_id].inc()
            action = build_action(rule, user_id, fire, max(detected_at, fire.trigger_ts))
            if self.emit_json:
                yield Row(KIND_ACTION, user_id, action.to_json_bytes().decode())
            else:
                yield action

    @staticmethod
    def _decode(row, max_future_ms: int | None = DEFAULT_MAX_FUTURE_MS) -> EngineEvent | str:
        """A keyed payload row (jobs.sources.kafka_keyed_records) -> EngineEvent, or the reason
        it is not a valid event. Decoded in SQL when certainly valid (guard rails included),
        else by the contract's decoder, which must also read the user_id the stream is keyed by."""
        if row[5]:
            properties = row[10]
            return EngineEvent(
                row[8],
                row[6],
                row[7],
                row[9],
                {} if properties is None or properties == "{}" else json.loads(properties),
            )
        event = _decode_raw(row[1], max_future_ms)
        if isinstance(event, str):
            return event
        if event.user_id != row[0]:
            return "user_id: read differently by Flink SQL (the stream's key) and the decoder"
        return EngineEvent.from_event(event)


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
