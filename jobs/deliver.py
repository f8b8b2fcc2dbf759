"""`moments deliver`: the actions topic (or a JSONL file) to Braze and Iterable.

Its own job and consumer group, so a vendor outage slows delivery, never detection. Offsets are
committed only once every action read has a final outcome (delivered, or in the dead-letter
topic): a crash or a restart delivers again rather than loses.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from pathlib import Path

from jobs.cli import UsageError
from jobs.settings import (
    ACTIONS_TOPIC,
    DELIVERY_DLQ_TOPIC,
    ENV_KAFKA_BOOTSTRAP,
    LOCAL_KAFKA_BOOTSTRAP,
)
from schemas.durations import parse_duration_ms
from udfs.delivery.assemble import build_deliverer
from udfs.delivery.pipeline import BatchOutcome, DeliveryPipeline, SourceRecord
from udfs.delivery.settings import (
    DEFAULT_RATE_LIMITS,
    ENV_BRAZE_API_KEY,
    ENV_BRAZE_API_KEY_FILE,
    ENV_BRAZE_REST_ENDPOINT,
    ENV_ITERABLE_API_ENDPOINT,
    ENV_ITERABLE_API_KEY,
    ENV_ITERABLE_API_KEY_FILE,
    ENV_RATE_LIMITS,
    DeliverySettings,
    SettingsError,
    parse_rate_limits,
    read_api_key,
    vendor_settings,
)
from udfs.vendors.iterable import DEFAULT_ENDPOINT as ITERABLE_DEFAULT_ENDPOINT
from udfs.vendors.iterable import MAX_BULK_EVENTS
from udfs.vendors.profile import DEFAULT_PROFILE_FIELDS

log = logging.getLogger("moments.deliver")

DEFAULT_GROUP_ID = "moments-deliver"
# Generous: a batch waits out 429s and retries before its offsets are committed.
MAX_POLL_INTERVAL_MS = 900_000

EPILOG = (
    f"""\
environment:
  {ENV_KAFKA_BOOTSTRAP}   Kafka bootstrap servers (default {LOCAL_KAFKA_BOOTSTRAP});
                            --bootstrap-servers wins
  {ENV_BRAZE_REST_ENDPOINT}       your Braze REST endpoint, e.g. https://rest.iad-01.braze.com
  {ENV_BRAZE_API_KEY}             Braze REST API key (sent as Authorization: Bearer ...)
  {ENV_BRAZE_API_KEY_FILE}        file holding the Braze key (a mounted secret);
                            not with {ENV_BRAZE_API_KEY}
  {ENV_ITERABLE_API_ENDPOINT}     Iterable API base URL (default {ITERABLE_DEFAULT_ENDPOINT};
                            EU projects: https://api.eu.iterable.com)
  {ENV_ITERABLE_API_KEY}          Iterable server-side API key (sent as Api-Key: ...)
  {ENV_ITERABLE_API_KEY_FILE}     file holding the Iterable key; not with {ENV_ITERABLE_API_KEY}
  {ENV_RATE_LIMITS}       comma-separated ENDPOINT=N/DURATION overrides, like --rate-limit

  A vendor is configured when its key is set (Braze also needs its endpoint). At least one must be.
  Actions naming a vendor that is not configured go to the dead-letter topic with that reason.
  Keys are never logged; neither are emails or phone numbers.

rate limits (client side, per endpoint; defaults are the vendors' documented limits):
"""
    + "\n".join(f"  {name:<28}{limit}" for name, limit in DEFAULT_RATE_LIMITS.items())
    + f"""
  (iterable.trigger_workflow: no documented figure found; 10/1s is a conservative default)

dead letters (topic {DELIVERY_DLQ_TOPIC}, or --dlq-file in file mode), one JSON object each:
  {{"action": {{...}}, "destination": "braze", "endpoint": "/users/track", "status": 400,
   "response": "<vendor body>", "reason": "...", "attempts": 1, "failed_at": <epoch ms>}}
  Records that are not valid actions: "action": null, "raw": "<the record>", "source": {{...}}.

exit status: 0 done (or stopped cleanly by SIGTERM / Ctrl-C); 1 file mode with dead letters;
  2 usage or configuration error.
"""
)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    source = parser.add_argument_group("source")
    source.add_argument(
        "--actions",
        metavar="FILE",
        type=Path,
        help="deliver the actions in this JSONL file instead of reading Kafka, then print a "
        "summary (replays, demos)",
    )
    source.add_argument(
        "--bootstrap-servers",
        metavar="HOST:PORT",
        help=f"Kafka bootstrap servers (default: ${ENV_KAFKA_BOOTSTRAP} or "
        f"{LOCAL_KAFKA_BOOTSTRAP})",
    )
    source.add_argument(
        "--topic", default=ACTIONS_TOPIC, help="actions topic (default %(default)s)"
    )
    source.add_argument(
        "--group-id", default=DEFAULT_GROUP_ID, help="consumer group (default %(default)s)"
    )
    source.add_argument(
        "--start-from",
        choices=("earliest", "latest"),
        default="earliest",
        help="where a new consumer group starts (default %(default)s)",
    )
    source.add_argument(
        "--dlq-topic",
        default=DELIVERY_DLQ_TOPIC,
        help="delivery dead-letter topic (default %(default)s)",
    )
    source.add_argument(
        "--dlq-file",
        metavar="FILE",
        type=Path,
        help="file mode: where dead letters go (default: FILE.dlq.jsonl next to --actions; "
        "written only if there are any)",
    )

    batching = parser.add_argument_group("batching and retries")
    batching.add_argument(
        "--batch-size",
        type=_positive_int,
        default=500,
        help="actions read per batch; a batch is split into vendor requests within the "
        "vendors' limits (default %(default)s)",
    )
    batching.add_argument(
        "--linger",
        type=_duration_s,
        default=0.2,
        metavar="DURATION",
        help="wait this long after the first action for more before sending (default 200ms)",
    )
    batching.add_argument(
        "--timeout",
        type=_duration_s,
        default=10.0,
        metavar="DURATION",
        help="HTTP request timeout; a timeout is retried (default 10s)",
    )
    batching.add_argument(
        "--max-attempts",
        type=_positive_int,
        default=6,
        help="sends per request before a 5xx / timeout / dropped connection is final "
        "(default %(default)s)",
    )
    batching.add_argument(
        "--backoff-base",
        type=_duration_s,
        default=0.5,
        metavar="DURATION",
        help="first retry delay; doubles per retry, with jitter (default 500ms)",
    )
    batching.add_argument(
        "--backoff-max",
        type=_duration_s,
        default=30.0,
        metavar="DURATION",
        help="longest retry delay (default 30s)",
    )
    batching.add_argument(
        "--max-rate-limited",
        type=_non_negative_int,
        default=20,
        help="429s per request before it is dead-lettered (default %(default)s)",
    )
    batching.add_argument(
        "--concurrency",
        type=_positive_int,
        default=8,
        help="HTTP requests in flight at once (default %(default)s)",
    )
    batching.add_argument(
        "--rate-limit",
        action="append",
        default=[],
        metavar="ENDPOINT=N/DURATION",
        help="override a client-side rate limit, e.g. iterable.track_bulk=5/1s (repeatable; "
        "endpoints listed below)",
    )

    vendors = parser.add_argument_group("vendor payloads")
    vendors.add_argument(
        "--braze-profile-fields",
        type=_field_list,
        default=DEFAULT_PROFILE_FIELDS,
        metavar="F1,F2",
        help="profile fields copied into Braze event / trigger properties (default "
        f"{','.join(DEFAULT_PROFILE_FIELDS)}; email and phone only if named here; '' for none)",
    )
    vendors.add_argument(
        "--iterable-profile-fields",
        type=_field_list,
        default=DEFAULT_PROFILE_FIELDS,
        metavar="F1,F2",
        help="profile fields copied into Iterable dataFields (same default and rules)",
    )
    vendors.add_argument(
        "--iterable-identity",
        choices=("userId", "email"),
        default="userId",
        help="identify Iterable users by the action's user_id, or by profile.email "
        "(default %(default)s)",
    )
    vendors.add_argument(
        "--iterable-bulk-size",
        type=_positive_int,
        default=MAX_BULK_EVENTS,
        help=f"events per trackBulk request (1..{MAX_BULK_EVENTS}; default %(default)s)",
    )

    lifetime = parser.add_argument_group("run length and logging")
    lifetime.add_argument(
        "--max-idle",
        type=_duration_s,
        metavar="DURATION",
        help="Kafka mode: stop after this long without new actions, counted once partitions "
        "are assigned (default: run until SIGTERM / Ctrl-C)",
    )
    lifetime.add_argument(
        "--max-actions",
        type=_positive_int,
        metavar="N",
        help="stop after N records have a final outcome and are committed",
    )
    lifetime.add_argument(
        "--log-level",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        default="INFO",
        help="default %(default)s",
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _duration_s(text: str) -> float:
    try:
        return parse_duration_ms(text) / 1000
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _field_list(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def settings_from(args: argparse.Namespace, environ: Mapping[str, str]) -> DeliverySettings:
    try:
        braze = vendor_settings(
            "braze",
            read_api_key(environ, ENV_BRAZE_API_KEY, ENV_BRAZE_API_KEY_FILE),
            environ.get(ENV_BRAZE_REST_ENDPOINT),
            ENV_BRAZE_API_KEY,
            ENV_BRAZE_REST_ENDPOINT,
        )
        iterable_key = read_api_key(environ, ENV_ITERABLE_API_KEY, ENV_ITERABLE_API_KEY_FILE)
        iterable = vendor_settings(
            "iterable",
            iterable_key,
            environ.get(ENV_ITERABLE_API_ENDPOINT)
            or (ITERABLE_DEFAULT_ENDPOINT if iterable_key else None),
            ENV_ITERABLE_API_KEY,
            ENV_ITERABLE_API_ENDPOINT,
        )
        env_limits = [s for s in environ.get(ENV_RATE_LIMITS, "").split(",") if s.strip()]
        rate_limits = parse_rate_limits(env_limits + list(args.rate_limit))
    except SettingsError as exc:
        raise UsageError(str(exc)) from exc
    if braze is None and iterable is None:
        raise UsageError(
            f"no vendor configured: set {ENV_BRAZE_API_KEY} and {ENV_BRAZE_REST_ENDPOINT}, "
            f"and/or {ENV_ITERABLE_API_KEY} (see moments deliver --help)"
        )
    if not 1 <= args.iterable_bulk_size <= MAX_BULK_EVENTS:
        raise UsageError(f"--iterable-bulk-size must be 1..{MAX_BULK_EVENTS}")
    if args.backoff_max < args.backoff_base:
        raise UsageError("--backoff-max must be at least --backoff-base")
    return DeliverySettings(
        braze=braze,
        iterable=iterable,
        braze_profile_fields=args.braze_profile_fields,
        iterable_profile_fields=args.iterable_profile_fields,
        iterable_identity=args.iterable_identity,
        iterable_bulk_size=args.iterable_bulk_size,
        rate_limits=rate_limits,
        max_attempts=args.max_attempts,
        backoff_base_s=args.backoff_base,
        backoff_max_s=args.backoff_max,
        max_rate_limited=args.max_rate_limited,
        timeout_s=args.timeout,
        concurrency=args.concurrency,
    )


@contextmanager
def _stop_on_signals(stop: threading.Event):
    """SIGTERM / first Ctrl-C: finish in-flight sends, commit what is final, exit. A second
    Ctrl-C interrupts at once (nothing unfinished is committed, so nothing is lost)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum, frame):
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        log.info("stopping after in-flight requests (signal %d)", signum)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    settings = settings_from(args, os.environ)
    if args.actions is not None and not args.actions.is_file():
        raise UsageError(f"--actions: no such file: {args.actions}")
    stop = threading.Event()
    deliverer = build_deliverer(settings, stop)
    log.info(
        "delivering to %s; rate limits %s",
        ", ".join(settings.configured()),
        ", ".join(f"{k}={v}" for k, v in settings.rate_limits.items()),
    )
    try:
        with _stop_on_signals(stop):
            if args.actions is not None:
                summary = deliver_file(
                    DeliveryPipeline(deliverer),
                    args.actions,
                    args.dlq_file or args.actions.with_name(args.actions.name + ".dlq.jsonl"),
                    batch_size=args.batch_size,
                    max_actions=args.max_actions,
                    stop=stop,
                )
                print(format_summary(summary))
                return 1 if summary["dead_lettered_records"] else 0
            summary = deliver_topic(args, DeliveryPipeline(deliverer), stop)
            print(format_summary(summary))
            return 0
    finally:
        deliverer.close()


def deliver_file(
    pipeline: DeliveryPipeline,
    path: Path,
    dlq_path: Path,
    batch_size: int = 500,
    max_actions: int | None = None,
    stop: threading.Event | None = None,
) -> dict:
    """Deliver a JSONL file of actions in batches; dead letters to `dlq_path` (created only when
    needed). Returns the summary."""
    stop = stop or threading.Event()
    started = time.monotonic()
    totals = _Totals()
    dlq_file = None
    try:
        with path.open("rb") as lines:
            batch: list[SourceRecord] = []
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                position = {"file": str(path), "line": number}
                batch.append(SourceRecord(line.rstrip(b"\r\n"), position))
                if max_actions is not None and totals.records + len(batch) >= max_actions:
                    break
                if len(batch) >= batch_size:
                    dlq_file = _file_batch(pipeline, batch, totals, dlq_path, dlq_file)
                    batch = []
                    if stop.is_set():
                        break
            if batch and not stop.is_set():
                dlq_file = _file_batch(pipeline, batch, totals, dlq_path, dlq_file)
    finally:
        if dlq_file is not None:
            dlq_file.close()
    return totals.summary(pipeline, time.monotonic() - started, dlq=str(dlq_path))


def _file_batch(pipeline, batch, totals, dlq_path, dlq_file):
    outcome = pipeline.process(batch)
    if outcome.dead_letters and dlq_file is None:
        dlq_file = dlq_path.open("ab")
    for _key, value in outcome.dead_letters:
        dlq_file.write(value + b"\n")
    if dlq_file is not None:
        dlq_file.flush()
    totals.add(outcome, len(batch))
    return dlq_file


class _Totals:
    def __init__(self) -> None:
        self.records = 0
        self.unfinished = 0
        self.delivered = 0
        self.dead_lettered = 0
        self.skipped_duplicates = 0

    def add(self, outcome: BatchOutcome, records: int) -> None:
        self.records += records
        self.unfinished += outcome.finished.count(False)
        self.delivered += outcome.delivered
        self.dead_lettered += len(outcome.dead_letters)
        self.skipped_duplicates += outcome.skipped_duplicates

    def summary(self, pipeline: DeliveryPipeline, seconds: float, **extra) -> dict:
        return {
            "records": self.records,
            "unfinished_records": self.unfinished,
            "deliveries": self.delivered,
            "dead_lettered_records": self.dead_lettered,
            "skipped_duplicates": self.skipped_duplicates,
            "seconds": round(seconds, 3),
            "deliveries_per_s": round(self.delivered / seconds, 1) if seconds > 0 else None,
            "http": pipeline.deliverer.stats.as_dict(),
            **extra,
        }


def format_summary(summary: dict) -> str:
    http = summary["http"]
    lines = [
        f"records read: {summary['records']}  deliveries: {summary['deliveries']}  "
        f"dead-lettered: {summary['dead_lettered_records']}  "
        f"duplicates skipped: {summary['skipped_duplicates']}  "
        f"unfinished (not committed): {summary['unfinished_records']}",
        f"http requests: {http['requests']}  retries: {http['retries']}  "
        f"429s: {http['rate_limited']}  5xx: {http['server_errors']}  "
        f"timeouts/dropped: {http['transport_errors']}",
        f"time: {summary['seconds']}s  deliveries/s: {summary['deliveries_per_s']}",
    ]
    if summary.get("dlq") and summary["dead_lettered_records"]:
        lines.append(f"dead letters: {summary['dlq']}")
    return "\n".join(lines)


def deliver_topic(
    args: argparse.Namespace,
    pipeline: DeliveryPipeline,
    stop: threading.Event,
    environ: Mapping[str, str] | None = None,
) -> dict:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.errors import CommitFailedError
    from kafka.structs import OffsetAndMetadata

    environ = os.environ if environ is None else environ
    bootstrap = args.bootstrap_servers or environ.get(ENV_KAFKA_BOOTSTRAP) or LOCAL_KAFKA_BOOTSTRAP
    consumer = KafkaConsumer(
        args.topic,
        bootstrap_servers=bootstrap.split(","),
        group_id=args.group_id,
        enable_auto_commit=False,
        auto_offset_reset=args.start_from,
        max_poll_records=args.batch_size,
        max_poll_interval_ms=MAX_POLL_INTERVAL_MS,
    )
    producer = KafkaProducer(
        bootstrap_servers=bootstrap.split(","), acks="all", retries=10, linger_ms=20
    )
    started = time.monotonic()
    totals = _Totals()
    last_record_at = time.monotonic()
    try:
        while not stop.is_set():
            remaining = None if args.max_actions is None else args.max_actions - totals.records
            if remaining is not None and remaining <= 0:
                break
            records = _collect(
                consumer, min(args.batch_size, remaining or args.batch_size), args.linger, stop
            )
            if not records:
                if not consumer.assignment():
                    # Not idle yet: still joining the group (e.g. waiting for a crashed member's
                    # session to time out before its partitions are handed over).
                    last_record_at = time.monotonic()
                    continue
                if args.max_idle is not None and time.monotonic() - last_record_at >= args.max_idle:
                    log.info("idle for %.1fs: stopping", args.max_idle)
                    break
                continue
            sources = [
                SourceRecord(
                    r.value or b"", {"topic": r.topic, "partition": r.partition, "offset": r.offset}
                )
                for r in records
            ]
            outcome = pipeline.process(sources)
            # Dead letters must be durable before the offsets that produced them are committed.
            sent = [producer.send(args.dlq_topic, key=k, value=v) for k, v in outcome.dead_letters]
            producer.flush()
            for future in sent:
                future.get(timeout=60)
            offsets = _committable(records, outcome.finished, TopicPartition, OffsetAndMetadata)
            if offsets:
                try:
                    consumer.commit(offsets=offsets)
                except CommitFailedError as exc:
                    # Partitions moved to another member mid-batch: it redelivers them (duplicates,
                    # never loss).
                    log.warning("commit failed (rebalance?): %s", exc)
            totals.add(outcome, len(records))
            last_record_at = time.monotonic()
            log.info(
                "batch: %d records, %d delivered, %d dead-lettered",
                len(records),
                outcome.delivered,
                len(outcome.dead_letters),
            )
    finally:
        consumer.close(autocommit=False)
        producer.close(timeout=30)
    return totals.summary(pipeline, time.monotonic() - started, dlq=args.dlq_topic)


def _collect(consumer, max_records: int, linger_s: float, stop: threading.Event) -> list:
    """Poll until `max_records`, or `linger_s` after the first record, or 200 ms of nothing."""
    batch: list = []
    deadline: float | None = None
    while len(batch) < max_records and not stop.is_set():
        now = time.monotonic()
        wait_s = 0.2 if deadline is None else max(0.0, deadline - now)
        polled = consumer.poll(timeout_ms=int(wait_s * 1000), max_records=max_records - len(batch))
        for records in polled.values():
            batch.extend(records)
        if not batch:
            return batch
        if deadline is None:
            deadline = now + linger_s
        if time.monotonic() >= deadline:
            break
    return batch


def _committable(
    records: list, finished: list[bool], topic_partition: Callable, offset_and_metadata: Callable
) -> dict:
    """Per partition, the offset after the last record such that it and every earlier record of
    the batch are final. A record not final (stopped mid-batch) holds back the ones after it."""
    by_partition: dict[tuple[str, int], list[tuple[int, bool]]] = {}
    for record, done in zip(records, finished, strict=True):
        by_partition.setdefault((record.topic, record.partition), []).append((record.offset, done))
    offsets = {}
    for (topic, partition), entries in by_partition.items():
        next_offset = None
        for offset, done in sorted(entries):
            if not done:
                break
            next_offset = offset + 1
        if next_offset is not None:
            offsets[topic_partition(topic, partition)] = offset_and_metadata(next_offset, "", -1)
    return offsets
