"""Send a JSONL event stream (stdin or a file) to the events topic: the compose event generator.

    moments generate --users 300 --events 6000 --events-per-second 50 --out - \\
        | python deploy/produce_events.py --shift-to-now --realtime

Each record is keyed by `user_id`, so a user's events keep their arrival order inside one
partition. `--shift-to-now` moves every integer `ts` by one offset so the first event happens now
(detection latency then reads as wall-clock latency); `--realtime` paces the sends so event time
and wall-clock time advance together. Lines that are not event objects are sent unchanged, without
a key: the detection job dead-letters them, as it would in production.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from jobs.settings import ENV_KAFKA_BOOTSTRAP, EVENTS_TOPIC, LOCAL_KAFKA_BOOTSTRAP


@dataclass(frozen=True)
class Record:
    key: bytes | None
    value: bytes
    ts: int | None  # event time after any shift; None for lines that are not events


def records(lines: Iterable[bytes], shift_to_ms: int | None = None) -> Iterator[Record]:
    """Kafka records from JSONL lines; with `shift_to_ms`, the first integer `ts` becomes that."""
    offset = None
    for line in lines:
        raw = line.rstrip(b"\r\n")
        if not raw.strip():
            continue
        try:
            event = json.loads(raw)
        except ValueError:
            yield Record(None, raw, None)
            continue
        if not isinstance(event, dict):
            yield Record(None, raw, None)
            continue
        user_id = event.get("user_id")
        key = str(user_id).encode() if user_id is not None else None
        ts = event.get("ts")
        if not isinstance(ts, int) or isinstance(ts, bool):
            yield Record(key, raw, None)
            continue
        if shift_to_ms is not None:
            if offset is None:
                offset = shift_to_ms - ts
            ts += offset
            event["ts"] = ts
            raw = json.dumps(event, separators=(",", ":")).encode()
        yield Record(key, raw, ts)


class Pacer:
    """Holds each send back until wall-clock time has advanced as far as event time (scaled by
    `speed`) since the first event. Out-of-order events never wait: only a new maximum does."""

    def __init__(
        self,
        speed: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.speed = speed
        self.clock = clock
        self.sleep = sleep
        self.first_ts: int | None = None
        self.started = 0.0

    def wait_for(self, ts: int | None) -> None:
        if ts is None:
            return
        if self.first_ts is None:
            self.first_ts, self.started = ts, self.clock()
            return
        due = self.started + (ts - self.first_ts) / 1000.0 / self.speed
        delay = due - self.clock()
        if delay > 0:
            self.sleep(delay)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input", nargs="?", default="-", help="JSONL file, or - for stdin")
    parser.add_argument(
        "--bootstrap-servers",
        default=os.environ.get(ENV_KAFKA_BOOTSTRAP) or LOCAL_KAFKA_BOOTSTRAP,
        help=f"default: ${ENV_KAFKA_BOOTSTRAP} or {LOCAL_KAFKA_BOOTSTRAP}",
    )
    parser.add_argument("--topic", default=EVENTS_TOPIC, help="default %(default)s")
    parser.add_argument(
        "--shift-to-now", action="store_true", help="restamp so the first event happens now"
    )
    parser.add_argument("--realtime", action="store_true", help="pace sends to follow event time")
    parser.add_argument(
        "--speed", type=float, default=1.0, help="with --realtime: event seconds per second"
    )
    args = parser.parse_args(argv)
    if args.speed <= 0:
        parser.error("--speed must be > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from kafka import KafkaProducer

    # Idempotent: a retried batch is neither duplicated nor reordered behind later ones (either
    # would change what the rules see, and a reordered event can arrive past the bound, late).
    producer = KafkaProducer(
        bootstrap_servers=args.bootstrap_servers.split(","),
        acks="all",
        linger_ms=5,
        enable_idempotence=True,
    )
    pacer = Pacer(args.speed) if args.realtime else None
    source = sys.stdin.buffer if args.input == "-" else open(args.input, "rb")
    sent = 0
    try:
        shift = int(time.time() * 1000) if args.shift_to_now else None
        for record in records(source, shift):
            if pacer is not None:
                pacer.wait_for(record.ts)
            producer.send(args.topic, key=record.key, value=record.value)
            sent += 1
            if sent % 1000 == 0:
                print(f"produce_events: {sent} records sent to {args.topic}", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    finally:
        producer.flush()
        producer.close()
        if source is not sys.stdin.buffer:
            source.close()
    print(f"produce_events: {sent} records sent to {args.topic}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
