"""The detect operator's own Python work per call, without Flink: microseconds per element and
timer, and with --profile where they go (cProfile, by internal time).

    .venv/bin/python bench/operator_bench.py [--events 100000] [--users 100000]
        [--watermark-every 320] [--profile] [--release]

Drives jobs.operators.DetectMoments, the class the Kafka-mode job runs, over udfs.generator's
stream (seed 7, 5,000 events/s of event time, out of order by up to 1.5 s, Zipf s = 1.1) with
examples/rules.yaml, through udfs/host.py's memory timer service and memory state pickled as
Flink's PICKLED_BYTE_ARRAY state is. Each record is a Kafka-mode payload row (jobs/connectors/
payload.py) the JVM decoded; a quarter of the activity events (types only a silence rule reads)
pass, about what the JVM activity filter lets through. The watermark (max ts - 2 s) moves every
`--watermark-every` rows (in the Flink job it moves every 50 ms: a few hundred rows at 20k
events/s). What this leaves out is PyFlink's share of a call (row conversion, its state and
timer wrappers, the JVM): a Flink job's call costs about twice this (bench/README.md, "Where the
detect thread's time goes").
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pyflink.common import Row  # noqa: E402

from jobs.operators import DetectMoments  # noqa: E402
from moments_testing.release import JvmRelease  # noqa: E402
from schemas.rules import load_rules  # noqa: E402
from udfs.engine import Engine  # noqa: E402
from udfs.generator import GeneratorSettings, generate  # noqa: E402
from udfs.host import Counter, MemoryState, MemoryTimerService  # noqa: E402

BOUND_MS = 2_000


class Metrics:
    def counter(self, name: str) -> Counter:
        return Counter()

    def add_group(self, *names) -> Metrics:
        return self


class RuntimeContext:
    def __init__(self, service: MemoryTimerService):
        self.service = service

    def get_state(self, descriptor) -> MemoryState:
        return MemoryState(self.service, pickled=True)

    def get_keyed_state_backend(self) -> MemoryTimerService:
        return self.service  # set_current_key: jobs.flink_compat.key_switch

    def get_metrics_group(self) -> Metrics:
        return Metrics()


def payload_rows(events: int, users: int, engine: Engine) -> list[Row]:
    settings = GeneratorSettings(
        users=users, events=events, seed=7, events_per_second=5_000, out_of_order_ms=1_500
    )
    sample = random.Random(1)
    rows = []
    for event in generate(settings):
        if engine.is_activity(event["event_type"]) and sample.random() > 0.25:
            continue
        properties = json.dumps(event.get("properties") or {})
        raw = json.dumps(event).encode()
        rows.append(
            Row(event["user_id"], raw, "events", 0, 0, True, event["event_id"],
                event["event_type"], event["ts"], event.get("device"), properties, None, None)
        )  # fmt: skip
    return rows


def run(operator, service, rows, every: int, release: bool, profile=None) -> dict:
    """`profile`: a cProfile.Profile enabled around the operator's calls only."""
    calls = {"elements": 0, "timers": 0, "outputs": 0, "operator_s": 0.0}
    max_ts = 0
    jvm = JvmRelease() if release else None
    clock = time.perf_counter
    on = profile.enable if profile is not None else lambda: None
    off = profile.disable if profile is not None else lambda: None

    def element(row: Row) -> None:
        service.key = row[0]
        on()
        start = clock()
        calls["outputs"] += sum(1 for _ in operator.process_element(row, service))
        calls["operator_s"] += clock() - start
        off()
        calls["elements"] += 1

    def advance(watermark: int) -> None:
        if jvm is not None:  # what the JVM release operator emits before the watermark goes on
            step = jvm.advance(watermark)
            if step is not None:
                element(step)
        for timestamp in service.advance_watermark(watermark):
            calls["timers"] += 1
            on()
            start = clock()
            calls["outputs"] += sum(1 for _ in operator.on_timer(timestamp, service))
            calls["operator_s"] += clock() - start
            off()

    for index, row in enumerate(rows):
        if jvm is None or not jvm.hold(row):
            element(row)
        max_ts = max(max_ts, row[8])
        if index % every == 0:
            advance(max_ts - BOUND_MS)
    advance(2**62)
    return calls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--watermark-every", type=int, default=320)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--release", action="store_true", help="events held and released as the JVM does"
    )
    args = parser.parse_args()
    rules = load_rules(ROOT / "examples" / "rules.yaml")
    rows = payload_rows(args.events, args.users, Engine(rules))
    service = MemoryTimerService(now=0)
    operator = DetectMoments(rules, state_ttl_ms=86_400_000, decode_rows=True)
    operator.open(RuntimeContext(service))
    profile = cProfile.Profile() if args.profile else None
    start = time.perf_counter()
    calls = run(operator, service, rows, args.watermark_every, args.release, profile)
    seconds = time.perf_counter() - start
    if profile is not None:
        pstats.Stats(profile, stream=sys.stderr).sort_stats("tottime").print_stats(30)
    python_calls = calls["elements"] + calls["timers"]
    operator_s = calls["operator_s"]
    result = {
        "events": args.events,
        "rows": len(rows),
        **calls,
        "seconds": round(seconds, 3),
        # The operator's calls alone (the harness's own work, such as the release's, left out).
        "operator_s": round(calls.pop("operator_s"), 3),
        "us_per_call": round(1e6 * operator_s / python_calls, 1),
        "us_per_event": round(1e6 * operator_s / args.events, 2),
        "release": args.release,
        "profiled": args.profile,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
