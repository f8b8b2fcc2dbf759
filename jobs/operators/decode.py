"""Decoding: raw records to events by the contract and its guard rails. DecodeEvents is file mode's
operator (one reader, file order, backtest lateness); `decode_payload` reads a Kafka keyed payload
in the detect operator, trusting the fields the JVM vouched for.
"""

from __future__ import annotations

import base64
import json
import time

from pyflink.common import Row
from pyflink.common.watermark_strategy import TimestampAssigner
from pyflink.datastream import ProcessFunction

from jobs.connectors import payload as p
from jobs.operators.rows import DLQ_TAG, KIND_DLQ, KIND_LATE, LATE_TAG
from schemas.event import Event
from udfs.decode import DEFAULT_MAX_FUTURE_MS, InvalidEvent, dead_letter_json, decode_event
from udfs.host import ReplayWatermark, is_late
from udfs.model import EngineEvent


def decode_raw(raw: bytes | str, max_future_ms: int | None = DEFAULT_MAX_FUTURE_MS) -> Event | str:
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
        event = decode_raw(raw, self.max_future_ms)
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


def decode_payload(row, max_future_ms: int | None = DEFAULT_MAX_FUTURE_MS) -> EngineEvent | str:
    """A keyed payload row (jobs.connectors.payload) -> EngineEvent, or the reason it is not a
    valid event. Decoded in SQL when certainly valid (guard rails included), else by the
    contract's decoder, which must also read the user_id the stream is keyed by."""
    if row[p.DECODED]:
        properties = row[p.PROPERTIES]
        return EngineEvent(
            row[p.TS],
            row[p.EVENT_ID],
            row[p.EVENT_TYPE],
            row[p.DEVICE],
            {} if properties is None or properties == "{}" else json.loads(properties),
        )
    event = decode_raw(row[p.VALUE], max_future_ms)
    if isinstance(event, str):
        return event
    if event.user_id != row[p.USER_ID]:
        return "user_id: read differently by Flink SQL (the stream's key) and the decoder"
    return EngineEvent.from_event(event)


def released_users(
    batch: str | None, user_id: str, event: EngineEvent, raw
) -> list[tuple[str, list[EngineEvent], list]]:
    """A release's events per user (udfs/jvm ReleaseOnWatermark): `(user_id, events, raws)` for
    each user in `batch` (a JSON array of `[user_id, [[ts, event_id, event_type, device,
    properties, raw value in base64], ...]]`, as decode_payload reads the same fields, the
    record's own user first), the record's own `event` and `raw` added to its user's; the raws
    are for `released_raw` (only a late one is ever read)."""
    if batch is None:
        return [(user_id, [event], [raw])]
    users = []
    for user, items in json.loads(batch):
        events = [EngineEvent(i[0], i[1], i[2], i[3], i[4] or {}) for i in items]
        users.append((user, events, [i[5] for i in items]))
    if not users or users[0][0] != user_id:
        raise ValueError("a release's batch must start with its record's own user")
    users[0][1].append(event)
    users[0][2].append(raw)
    return users


def released_raw(raw: bytes | str) -> bytes:
    """A raw value from `released_events`: bytes, or base64 text from a batch."""
    return base64.b64decode(raw) if isinstance(raw, str) else raw


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
