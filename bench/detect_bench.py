"""Events per second through `moments run`, Kafka in -> Kafka out, on a local MiniCluster.

    .venv/bin/python bench/detect_bench.py [--events 100000] [--users 5000] [--parallelism 1 2]
        [--bootstrap 127.0.0.1:19092] [--layouts design:python nosilence:python nosilence:jvm]
        [--job-flag=--no-jvm-release ...]

Produces a generated stream (udfs.generator: 80% of events are types no example rule reads) once
per partition count, then runs the job once per layout and parallelism from the earliest offset
with a fresh consumer group. The clock starts when the source emits its first record and stops
when every record is accounted for (the source has emitted them all and Python has processed,
dead-lettered or called late every record it was given). Layouts:
  design:python     DESIGN.md's four rules (a silence rule: nothing can be skipped), all in Python
  nosilence:python  the three other rules, every record decoded in Python
  nosilence:jvm     the same rules, valid events no rule reads dropped in Flink SQL first
  design:topic      live rules: the same file as the initial version of --rules-topic (an empty
                    topic), so the JVM filters are off
  design:scope      the same, with --rules-scope naming the same rules: the filters are back on
  design:jvm:inline a third part: that enrichment layout (inline, sync, async) with the CRM of
                    CRM_DSN or the local one (without it: no CRM)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jobs.settings import LOCAL_CRM_DSN, LOCAL_KAFKA_BOOTSTRAP  # noqa: E402
from moments_testing.flink_job import RunningJob, create_topics  # noqa: E402
from udfs.generator import GeneratorSettings, generate  # noqa: E402

RULES = {
    "design": """
rules:
  - id: cart_silence
    pattern: {type: silence, start: {event_type: add_to_cart},
              unless: {event_type: [checkout_started, purchase]}, gap: 45s}
    cooldown: 24h
    action: {name: cart_nudge, destinations: [kafka, braze]}
""",
    "common": """
  - id: login_trouble
    pattern: {type: count, match: {event_type: login_failed}, threshold: 3, within: 2m}
    action: {name: login_help, destinations: [kafka, iterable]}
  - id: quick_add
    pattern: {type: sequence, steps: [{event_type: product_view}, {event_type: add_to_cart}],
              within: 10s}
    action: {name: welcome_offer, destinations: [kafka]}
  - id: no_checkout
    pattern: {type: absence, start: {event_type: add_to_cart},
              missing: {event_type: checkout_started}, within: 45s}
    action: {name: exit_banner, destinations: [kafka]}
""",
}


def rules_text(name: str) -> str:
    head = RULES["design"] if name == "design" else "rules:\n"
    return head + RULES["common"]


def produce_stream(bootstrap: str, topic: str, events: int, users: int) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=20, batch_size=256 * 1024, acks=1
    )
    settings = GeneratorSettings(users=users, events=events, out_of_order_ms=500)
    for record in generate(settings):
        producer.send(topic, json.dumps(record).encode(), key=record["user_id"].encode())
    producer.flush()
    producer.close()


def progress(job: RunningJob) -> tuple[float, float, float]:
    """(records the source emitted, records Python was given, records Python finished)."""
    totals = job.metrics_matching(("decode.", "detect."))
    emitted = job.metrics_matching(("Source__",), suffix=".numRecordsOut")
    source = sum(emitted.values())
    given = totals.get("detect.events_in", 0.0)
    done = (
        totals.get("detect.processed", 0.0)
        + totals.get("detect.late", 0.0)
        + totals.get("detect.invalid", 0.0)
    )
    return source, given, done


def run_once(args, topic: str, layout: str, parallelism: int, workdir: Path) -> dict:
    rules_name, where, *crm = layout.split(":")
    rules = workdir / f"{rules_name}.yaml"
    rules.write_text(rules_text(rules_name))
    roles = {"actions": 2, "dlq": 1, "late": 1}
    if where in ("topic", "scope"):
        roles |= {"rules": 1, "status": 1}
    outputs = create_topics(args.admin, "bench", roles)
    job_args = [
        "--rules", str(rules), "--bootstrap-servers", args.bootstrap, "--events-topic", topic,
        "--actions-topic", outputs["actions"], "--dlq-topic", outputs["dlq"],
        "--late-topic", outputs["late"], "--group-id", f"bench-{time.time_ns()}",
        "--starting-offsets", "earliest", "--parallelism", str(parallelism),
        "--checkpoint-interval", "10s", "--idle-fire-after", "off",
        "--execution-mode", args.execution_mode,
        # The REST API serves metrics at most this old (default 10 s): the clock needs fresh ones.
        "--flink-conf", "metrics.fetcher.update-interval=200",
    ]  # fmt: skip
    if where == "python":
        job_args.append("--no-jvm-prefilter")
    job_args += args.job_flag
    if where in ("topic", "scope"):
        job_args += ["--rules-topic", outputs["rules"], "--rules-status-topic", outputs["status"]]
    if where == "scope":
        job_args += ["--rules-scope", str(rules)]
    # A third part names an enrichment layout, with the CRM of CRM_DSN (or the local one).
    os.environ["CRM_BACKEND"] = "postgres" if crm else "none"
    os.environ.setdefault("CRM_DSN", LOCAL_CRM_DSN)
    if crm:
        job_args += ["--enrichment-layout", crm[0]]
    job = RunningJob(job_args, workdir / f"{layout.replace(':', '-')}-p{parallelism}.log")
    started = finished_at = None
    last = None
    try:
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            if not job.alive():
                raise RuntimeError(f"job died:\n{job.log_tail()}")
            try:
                source, given, done = progress(job)
            except Exception:  # noqa: BLE001 - REST not up yet
                time.sleep(0.5)
                continue
            now = time.monotonic()
            if started is None and source > 0:
                started = now
            finished = source >= args.events and done >= given > 0
            if finished and last == (source, given, done):
                seconds = finished_at - started
                return {
                    "layout": layout, "parallelism": parallelism, "events": args.events,
                    "python_records": int(given), "seconds": round(seconds, 2),
                    "events_per_s": round(args.events / seconds),
                }  # fmt: skip
            if finished and last != (source, given, done):
                finished_at = now
            last = (source, given, done)
            time.sleep(0.25)
        raise RuntimeError(f"{layout} p{parallelism}: not done in {args.timeout}s")
    finally:
        job.stop()
        args.admin.delete_topics(list(outputs.values()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default=LOCAL_KAFKA_BOOTSTRAP)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--parallelism", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--layouts", nargs="+", default=["design:python", "nosilence:python", "nosilence:jvm"]
    )
    parser.add_argument("--execution-mode", choices=["thread", "process"], default="thread")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument(
        "--job-flag",
        action="append",
        default=[],
        metavar="FLAG",
        help="one more `moments run` flag for every job, e.g. --job-flag=--no-jvm-release",
    )
    args = parser.parse_args()

    from kafka.admin import KafkaAdminClient

    args.admin = KafkaAdminClient(bootstrap_servers=args.bootstrap)
    partitions = max(args.parallelism)
    inputs = create_topics(args.admin, "bench", {"events": partitions})
    print(f"producing {args.events} events for {args.users} users "
          f"to {partitions} partitions...", flush=True)  # fmt: skip
    produce_stream(args.bootstrap, inputs["events"], args.events, args.users)
    results = []
    with tempfile.TemporaryDirectory(prefix="detect-bench-") as tmp:
        for layout in args.layouts:
            for parallelism in args.parallelism:
                result = run_once(args, inputs["events"], layout, parallelism, Path(tmp))
                results.append(result)
                print(json.dumps(result), flush=True)
    args.admin.delete_topics([inputs["events"]])
    print(f"\n{'layout':<18} {'p':>2} {'events/s':>9} {'seconds':>8} {'python records':>15}")
    for r in results:
        print(f"{r['layout']:<18} {r['parallelism']:>2} {r['events_per_s']:>9} "
              f"{r['seconds']:>8} {r['python_records']:>15}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
