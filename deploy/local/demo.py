"""`make demo`: the whole system on this machine, live, for about a minute, then cleaned up.

Starts (or reuses) the local Kafka and PostgreSQL, local Braze- and Iterable-compatible endpoints
(the strict stand-ins the tests use), the detection job (`moments run`, Kafka mode, on a Flink
MiniCluster) and the delivery job (`moments deliver`); feeds the benchmark's live stream (5,000
events/s, 100 ms out-of-orderness bound, the Java paced producer) in real time; shows a sample of
the actions as they land, what the vendors accepted and the measured latencies; then stops what it
started. Topics are per run, so runs never see each other's data.
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from kafka import KafkaConsumer, TopicPartition  # noqa: E402
from kafka.admin import KafkaAdminClient, NewTopic  # noqa: E402

from jobs.settings import LOCAL_CRM_DSN, LOCAL_KAFKA_BOOTSTRAP  # noqa: E402
from moments_testing.vendors import BrazeServer, IterableServer  # noqa: E402
from schemas.rules import load_rules  # noqa: E402
from udfs.generator import GeneratorSettings, generate  # noqa: E402

RUN_DIR = ROOT / ".run" / "demo"
BIN = ROOT / ".venv" / "bin"
# The benchmark's event source (bench/README.md "Latency"): a Java producer that sends each event
# when the wall clock reaches it; a Python one falls behind at 5k events/s on 2 cores, and the
# watermark waits for every pause.
PACED_PRODUCER = ROOT / "bench" / "jvm" / "PacedProducer.java"
KAFKA_JARS = ROOT / ".cache" / "jars" / "kafka"
# The benchmark's live settings: watermarks every 20 ms (the job's default is 50 ms), network
# buffers flushed after 5 ms (20 ms).
LATENCY_CONF = [
    "--flink-conf",
    "pipeline.auto-watermark-interval=20 ms",
    "--flink-conf",
    "execution.buffer-timeout=5 ms",
]
# The broker stamps every record on append, so event and action times come from one clock.
TOPIC_CONFIG = {"message.timestamp.type": "LogAppendTime"}
DEADLINE_RULES = ("silence", "absence")


def say(text: str = "") -> None:
    print(text, flush=True)


def _ms(duration: str) -> int:
    """`100ms`, `1s`, `2m` in milliseconds."""
    for unit, factor in (("ms", 1), ("s", 1000), ("m", 60_000)):
        if duration.endswith(unit) and duration[: -len(unit)].isdigit():
            return int(duration[: -len(unit)]) * factor
    raise SystemExit(f"demo: not a duration: {duration!r} (e.g. 100ms, 1s)")


def percentiles(values: list[int]) -> str:
    """p50 / p95 / p99 / max (nearest rank) and the count, or `none` for no values."""
    if not values:
        return "none"
    ordered = sorted(values)
    rank = [ordered[max(0, math.ceil(q * len(ordered)) - 1)] for q in (0.5, 0.95, 0.99)]
    return f"{rank[0]:>5} {rank[1]:>5} {rank[2]:>5} {ordered[-1]:>6}   n={len(ordered)}"


class EventsTopic:
    """The events topic as the broker appended it: each event's append time, and when the input
    first let the watermark pass a time. The watermark is the minimum over partitions of the
    highest ts minus the bound minus 1, so an event at `ts` is passed once every partition has
    appended an event at or after ts + bound + 2 (as in bench/run.py)."""

    def __init__(self, bound_ms: int):
        self.bound_ms = bound_ms
        self.appended: dict[str, int] = {}  # event_id -> append ms
        self.partitions: dict[int, tuple[list[int], list[int]]] = {}  # appends, running max ts

    def add(self, partition: int, append_ms: int, event: dict) -> None:
        self.appended[event["event_id"]] = append_ms
        appends, highest = self.partitions.setdefault(partition, ([], []))
        appends.append(append_ms)
        highest.append(max(event["ts"], highest[-1]) if highest else event["ts"])

    def ready(self, ts: int) -> int | None:
        """When the input let the watermark pass `ts` (None: it never did; idle-fire-after)."""
        need, ready = ts + self.bound_ms + 2, 0
        for appends, highest in self.partitions.values():
            i = bisect.bisect_left(highest, need)
            if i == len(highest):
                return None
            ready = max(ready, appends[i])
        return ready


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _group_alive(process: subprocess.Popen) -> bool:
    """Whether any process of `process`'s group (it leads one) still runs. Read from /proc, not
    with kill(0): an orphaned member that exited stays a zombie until init reaps it."""
    process.poll()  # reap the leader
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # ended meanwhile
        if int(fields[2]) == process.pid and fields[0] != "Z":
            return True
    return False


def _service(script: str, action: str) -> int:
    return subprocess.run(
        [str(ROOT / "deploy" / "local" / script), action], capture_output=action == "status"
    ).returncode


class Demo:
    def __init__(self, args):
        self.args = args
        self.run_id = time.strftime("%Y%m%d%H%M%S")
        self.topics = {
            name: f"demo.{self.run_id}.{name}"
            for name in ("events", "actions", "events.dlq", "events.late", "delivery.dlq")
        }
        self.started_services: list[str] = []
        with socket.socket() as probe:  # the MiniCluster's REST port: free, so runs can overlap
            probe.bind(("127.0.0.1", 0))
            self.rest_port = probe.getsockname()[1]
        self.processes: dict[str, subprocess.Popen] = {}
        self.actions: list[dict] = []  # each with "_append" and "_screen" (ms, wall clock)
        self.shown_at: dict[str, float] = {}  # rule -> when its last action was printed
        self.stop_display = threading.Event()
        self.produced = 0
        self.producer_report: dict = {}
        self.stream_start_ts = self.stream_end_ts = 0
        self.rules = load_rules(args.rules)
        self.kinds = {r.id: r.pattern.type for r in self.rules}
        self.bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", LOCAL_KAFKA_BOOTSTRAP)
        self.crm_dsn = os.environ.get("CRM_DSN", LOCAL_CRM_DSN)

    # -- set-up ------------------------------------------------------------------------------
    def start_infra(self) -> None:
        for script, env in (("kafka.sh", "KAFKA_BOOTSTRAP_SERVERS"), ("postgres.sh", "CRM_DSN")):
            if env in os.environ:
                say(f"  using {env} from the environment")
                continue
            if _service(script, "status") == 0:
                say(f"  {script.removesuffix('.sh')}: already running, reused (left running)")
                continue
            if _service(script, "start") != 0:
                raise SystemExit(f"demo: {script} start failed (see .run/)")
            self.started_services.append(script)

    def create_topics(self) -> None:
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, client_id="moments-demo")
        partitions = {"events": 2, "actions": 2}
        admin.create_topics(
            [
                NewTopic(t, partitions.get(n, 1), 1, topic_configs=TOPIC_CONFIG)
                for n, t in self.topics.items()
            ]
        )
        admin.close()

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        log = open(RUN_DIR / f"{name}.log", "w")
        full_env = {**os.environ, **env, "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
        self.processes[name] = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start_jobs(self, braze: BrazeServer, iterable: IterableServer) -> None:
        t = self.topics
        self.spawn(
            "detect",
            [
                str(BIN / "moments"),
                "run",
                "--rules",
                str(self.args.rules),
                "--bootstrap-servers",
                self.bootstrap,
                "--events-topic",
                t["events"],
                "--actions-topic",
                t["actions"],
                "--dlq-topic",
                t["events.dlq"],
                "--late-topic",
                t["events.late"],
                "--group-id",
                f"moments-demo-{self.run_id}",
                "--starting-offsets",
                "earliest",
                "--max-out-of-orderness",
                self.args.bound,
                "--idle-fire-after",
                self.args.idle_fire_after,
                *LATENCY_CONF,
                "--checkpoint-interval",
                "5s",
                "--checkpoint-dir",
                str(RUN_DIR / "checkpoints"),
                "--rest-port",
                str(self.rest_port),
            ],
            {"CRM_DSN": self.crm_dsn},
        )
        keys = RUN_DIR / "keys"
        keys.mkdir(exist_ok=True)
        (keys / "braze").write_text(braze.api_key)
        (keys / "iterable").write_text(iterable.api_key)
        self.spawn(
            "deliver",
            [
                str(BIN / "moments"),
                "deliver",
                "--bootstrap-servers",
                self.bootstrap,
                "--topic",
                t["actions"],
                "--dlq-topic",
                t["delivery.dlq"],
                "--group-id",
                f"moments-deliver-demo-{self.run_id}",
                "--start-from",
                "earliest",
            ],
            {
                "BRAZE_REST_ENDPOINT": braze.url,
                "BRAZE_API_KEY_FILE": str(keys / "braze"),
                "ITERABLE_API_ENDPOINT": iterable.url,
                "ITERABLE_API_KEY_FILE": str(keys / "iterable"),
            },
        )

    def wait_for_detection_job(self, timeout_s: float = 300) -> None:
        deadline = time.monotonic() + timeout_s
        url = f"http://127.0.0.1:{self.rest_port}/jobs/overview"
        while time.monotonic() < deadline:
            if self.processes["detect"].poll() is not None:
                raise SystemExit(f"demo: the detection job exited; see {RUN_DIR / 'detect.log'}")
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    jobs = json.load(response).get("jobs", [])
                if jobs and all(j["state"] == "RUNNING" for j in jobs):
                    tasks = jobs[0].get("tasks", {})
                    if tasks.get("running", 0) == tasks.get("total", -1):
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise SystemExit(f"demo: the detection job did not start; see {RUN_DIR / 'detect.log'}")

    # -- the run -----------------------------------------------------------------------------
    def start_producer(self) -> None:
        """Start the paced producer on a named pipe: its JVM compiles and starts while the job
        does, and it reads the schedule once `feed` writes it."""
        fifo = RUN_DIR / "schedule.fifo"
        fifo.unlink(missing_ok=True)
        os.mkfifo(fifo)
        log = open(RUN_DIR / "producer.log", "w")
        self.processes["producer"] = subprocess.Popen(
            ["java", "-cp", f"{KAFKA_JARS}/*", str(PACED_PRODUCER), self.bootstrap]
            + [self.topics["events"], str(fifo)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            start_new_session=True,
        )

    def generate(self) -> list[dict]:
        """The stream, in arrival order, with event times from 0 (`feed` moves them)."""
        args = self.args
        settings = GeneratorSettings(
            users=args.users,
            events=int(args.rate * args.duration),
            seed=int(self.run_id),
            start_ts=0,
            events_per_second=args.rate,
            noise=0.8,
            out_of_order_ms=args.out_of_order_ms,
        )
        return list(generate(settings))

    def feed(self, events: list[dict]) -> None:
        """Move the events onto the wall clock, starting a lead from now (to write them and for
        the producer to connect), and hand them to the producer as its schedule: each is sent
        when the clock reaches its `ts`, a delayed one right after the one before it."""
        process = self.processes["producer"]
        fifo = RUN_DIR / "schedule.fifo"
        while True:  # the producer opens the pipe once its JVM is up
            if process.poll() is not None:
                raise SystemExit(f"demo: the producer exited; see {RUN_DIR / 'producer.log'}")
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError:
                time.sleep(0.1)
        os.set_blocking(fd, True)
        # Writing takes ~6 µs an event here; the producer then connects (about a second, more
        # when the machine is busy). Late sends are reported.
        start_ms = int(time.time() * 1000) + 3_000 + len(events) // 60
        send_at = 0
        with os.fdopen(fd, "w") as out:
            for event in events:
                event["ts"] += start_ms
                send_at = max(send_at, event["ts"])
                out.write(f"{send_at}\t{event['user_id']}\t{json.dumps(event)}\n")
            for raw in ("{not json", '{"event_id":"x","user_id":"u-1","ts":1}'):
                out.write(f"{send_at}\tu-1\t{raw}\n")  # two bad records, for the DLQ
        self.stream_start_ts = start_ms
        self.stream_end_ts = max(e["ts"] for e in events)
        self.produced = len(events)
        out, _ = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"demo: the producer failed; see {RUN_DIR / 'producer.log'}")
        self.producer_report = json.loads(out.strip().splitlines()[-1])
        fifo.unlink()

    def display(self) -> None:
        consumer = KafkaConsumer(
            self.topics["actions"],
            bootstrap_servers=self.bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            fetch_max_wait_ms=50,
        )
        while not self.stop_display.is_set():
            for batch in consumer.poll(timeout_ms=100).values():
                screen = time.time_ns() // 1_000_000
                for record in batch:
                    action = json.loads(record.value)
                    action["_append"] = record.timestamp
                    action["_screen"] = screen
                    self.actions.append(action)
                    self.show(action)
        consumer.close()

    def show(self, action: dict) -> None:
        """Print an action, at most one per rule every `--show-every` seconds (sooner for a user
        the CRM knows, u-1..u-400, who are rare among 100,000): 5,000 events/s make hundreds of
        actions a second, and the summary counts them all."""
        now = time.monotonic()
        rule = action["rule_id"]
        wait = self.args.show_every / (5 if action["enrichment"] == "ok" else 1)
        if now - self.shown_at.get(rule, -1e9) < wait:
            return
        self.shown_at[rule] = now
        say(
            f"  {time.strftime('%H:%M:%S')}  {rule:<14} {action['user_id']:<8} "
            f"trigger {action['trigger_ts'] % 100_000:>6}ms  "
            f"trigger->screen {action['_screen'] - action['trigger_ts']:>5} ms  "
            f"enrichment {action['enrichment']:<11} -> {','.join(action['destinations'])}"
        )

    def wait_for_deadlines(self, quiet_s: float = 2, limit_s: float = 300) -> None:
        """Wait until the job has read every event (its committed offsets, at each checkpoint),
        the last silence/absence deadlines are due and fired by idle-fire-after, and no action
        came for `quiet_s`."""
        windows = [
            getattr(r.pattern, "gap", None) or getattr(r.pattern, "within", 0)
            for r in self.rules
            if r.pattern.type in DEADLINE_RULES
        ]
        due_ms = self.stream_end_ts + max(windows, default=0) + _ms(self.args.idle_fire_after)
        offsets = KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=f"moments-demo-{self.run_id}",
            enable_auto_commit=False,
        )
        partitions = [
            TopicPartition(self.topics["events"], p)
            for p in offsets.partitions_for_topic(self.topics["events"])
        ]
        ends = offsets.end_offsets(partitions)
        deadline = time.monotonic() + limit_s
        last, since, behind_said = -1, time.monotonic(), False
        try:
            while time.monotonic() < deadline:
                if len(self.actions) != last:
                    last, since = len(self.actions), time.monotonic()
                elif time.time() * 1000 > due_ms and time.monotonic() - since >= quiet_s:
                    behind = sum(ends[tp] - (offsets.committed(tp) or 0) for tp in partitions)
                    if behind <= 0:
                        return
                    if not behind_said:
                        say(f"  ... the job is {behind:,} events behind; waiting for it")
                        behind_said = True
                time.sleep(0.2)
        finally:
            offsets.close()

    def wait_for_delivery(self, braze: BrazeServer, iterable: IterableServer, limit_s=60) -> None:
        """Wait until each vendor endpoint accepted every action addressed to it."""
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            want_braze, want_iterable = self.wanted()
            if want_braze <= braze.delivered_ids() and want_iterable <= iterable.delivered_ids():
                return
            time.sleep(0.2)

    def wanted(self) -> tuple[set[str], set[str]]:
        actions = list(self.actions)
        return tuple(
            {a["action_id"] for a in actions if vendor in a["destinations"]}
            for vendor in ("braze", "iterable")
        )

    def read_events(self) -> EventsTopic:
        """Read the events topic back, in each partition's order, after the run."""
        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            max_partition_fetch_bytes=8 << 20,
            fetch_max_bytes=64 << 20,
            max_poll_records=50_000,
        )
        topic = self.topics["events"]
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        events = EventsTopic(_ms(self.args.bound))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                for record in batch:
                    try:
                        events.add(record.partition, record.timestamp, json.loads(record.value))
                    except (ValueError, KeyError, TypeError):
                        pass  # the two invalid records
            if all(consumer.position(tp) >= ends[tp] for tp in partitions):
                break
        consumer.close()
        return events

    def stop_processes(self) -> None:
        """Stop each started process group and wait until every member is gone: the MiniCluster
        JVM outlives its Python client, and a Kafka client still shutting down would re-create
        a deleted topic."""
        for name in ("producer", "deliver", "detect"):
            process = self.processes.get(name)
            if process is None:
                continue
            _signal_group(process.pid, signal.SIGTERM)
            deadline = time.monotonic() + 30
            while _group_alive(process) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _group_alive(process):
                _signal_group(process.pid, signal.SIGKILL)
                while _group_alive(process):
                    time.sleep(0.1)

    def cleanup(self) -> None:
        self.stop_display.set()
        self.stop_processes()
        (RUN_DIR / "schedule.fifo").unlink(missing_ok=True)
        try:
            admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, client_id="moments-demo")
            admin.delete_topics(list(self.topics.values()))
            admin.close()
        except Exception:  # noqa: BLE001 - the broker may be gone; the topics go with it
            pass
        for script in reversed(self.started_services):
            _service(script, "stop")

    def main(self) -> int:
        args = self.args
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        say("micro-moments demo: what will happen")
        say(f"  1. start local Kafka ({self.bootstrap}) and PostgreSQL (CRM: users u-1..u-400)")
        say("  2. start local Braze- and Iterable-compatible endpoints on 127.0.0.1")
        say(f"  3. start the detection job (Flink MiniCluster) with {args.rules.name},")
        say(
            f"     out-of-orderness bound {args.bound}, idle-fire-after {args.idle_fire_after}, "
            "and the delivery job reading its actions topic"
        )
        say(
            f"  4. feed {args.users:,} users, {args.rate:,g} events/s for {args.duration:g} s, "
            f"out of order by up to {args.out_of_order_ms} ms (the benchmark's live stream), "
            "sent by the benchmark's paced Java producer"
        )
        say("  5. show a sample of the actions as they land, then what the vendors accepted and")
        say("     the latencies measured; stop everything it started")
        say()
        braze = BrazeServer(api_key=secrets.token_hex(16))
        iterable = IterableServer(api_key=secrets.token_hex(16))
        try:
            self.start_infra()
            self.create_topics()
            say(f"  topics demo.{self.run_id}.* (deleted at the end)")
            braze.start()
            iterable.start()
            self.start_jobs(braze, iterable)
            self.start_producer()
            events = self.generate()
            say("  waiting for the detection job to run ...")
            self.wait_for_detection_job()
            say(
                f"  running. A sample of the actions (at most one per rule every "
                f"{args.show_every:g} s; time, rule, user, trigger ts mod 100 s, trigger -> this "
                "screen, enrichment, destinations):"
            )
            shower = threading.Thread(target=self.display, daemon=True)
            shower.start()
            self.feed(events)
            del events
            say(f"  ... {self.produced:,} events sent; waiting for the last deadlines to fire")
            self.wait_for_deadlines()
            self.wait_for_delivery(braze, iterable)
            self.stop_display.set()
            shower.join(timeout=5)
            self.report(braze, iterable, self.read_events())
            if not self.actions:
                raise SystemExit(f"demo: no action came; see {RUN_DIR / 'detect.log'}")
        finally:
            braze.stop()
            iterable.stop()
            self.cleanup()
        say()
        say(
            f"Stopped what the demo started. Logs: {RUN_DIR}/detect.log, {RUN_DIR}/deliver.log, "
            f"{RUN_DIR}/producer.log, .run/kafka/server.log, .run/postgres/"
        )
        return 0

    def report(self, braze: BrazeServer, iterable: IterableServer, events: EventsTopic) -> None:
        per_rule = Counter(a["rule_id"] for a in self.actions)
        enrichment = Counter(a["enrichment"] for a in self.actions)
        say()
        say(f"Summary: {self.produced:,} events (+2 invalid) -> {len(self.actions):,} actions")
        for rule, n in sorted(per_rule.items()):
            say(f"  {rule:<14} {n:,}")
        say(f"  enrichment: {dict(enrichment)}")
        want_braze, want_iterable = self.wanted()
        say(
            f"  Braze accepted {len(braze.delivered_ids() & want_braze)}/{len(want_braze)} "
            f"(requests {braze.requests}); Iterable accepted "
            f"{len(iterable.delivered_ids() & want_iterable)}/{len(want_iterable)} "
            f"(requests {iterable.requests})"
        )
        sample = next(iter(braze.accepted_items.values()), None)
        if sample:
            say(f"  a Braze event as received: {json.dumps(sample)[:300]}")
        report = self.producer_report
        say(
            f"  producer: {report.get('sent', 0):,} records sent, at most "
            f"{report.get('max_late_ms', 0)} ms behind its schedule "
            f"({report.get('late_over_50ms', 0)} sends over 50 ms late)"
        )
        self.report_latency(events)

    def report_latency(self, events: EventsTopic) -> None:
        """The latencies, each named by what it measures. Times are the broker's append times
        (the topics are LogAppendTime) and this machine's clock for the screen."""
        bound_ms = _ms(self.args.bound)
        steady_from = self.stream_start_ts + self.args.warmup * 1000
        rows: dict[str, list[int]] = {k: [] for k in ("event", "input", "job", "steady")}
        rows |= {k: [] for k in ("timer", "timer_input", "timer_job", "idle", "screen")}
        for action in self.actions:
            done, trigger = action["_append"], action["trigger_ts"]
            if self.kinds[action["rule_id"]] in DEADLINE_RULES:
                if trigger > self.stream_end_ts:
                    rows["idle"].append(done - trigger)
                    continue
                if trigger <= self.stream_end_ts - bound_ms:
                    rows["timer"].append(done - trigger)
                    _split(rows, "timer_", events.ready(trigger - 1), trigger, done)
            else:
                completing = events.appended.get(action["event_ids"][-1])
                ready = events.ready(trigger)
                if completing is not None and ready is not None:
                    rows["event"].append(done - completing)
                    _split(rows, "", ready, completing, done)
                    if completing >= steady_from:
                        rows["steady"].append(done - completing)
            rows["screen"].append(action["_screen"] - trigger)
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        say()
        say(
            f"Latency, ms (load average {load} on {os.cpu_count()} cores; whatever else runs "
            "on the machine shows here)"
        )
        say(f"  {'':<70} {'p50':>5} {'p95':>5} {'p99':>5} {'max':>6}")
        labels = (
            ("event", "count/sequence: completing event appended -> action appended"),
            ("input", "  of which waiting for the input (the bound, then the next events)"),
            ("job", "  of which the job (from then to the action's append)"),
            ("steady", f"  the same, after the first {self.args.warmup:g} s (JIT warm-up)"),
            ("timer", "silence/absence during the stream: deadline -> action appended"),
            ("timer_input", "  of which waiting for the input"),
            ("timer_job", "  of which the job"),
            ("idle", "silence/absence after the last event: deadline -> action appended"),
            ("screen", "every action but those: trigger -> on this screen"),
        )
        for key, label in labels:
            say(f"  {label:<70} {percentiles(rows[key])}")
        say(
            "  The first row is the benchmark's figure (bench/README.md: p99 under 200 ms on its "
            "2 cores). The watermark passes an event once every partition has an event "
        )
        say(
            f"  {self.args.bound} later: no job can beat that wait. Deadlines after the last "
            f"event fire by idle-fire-after ({self.args.idle_fire_after}). 'trigger' is the "
            "action's trigger_ts: the completing"
        )
        say(
            "  event's ts (the stream sends an event up to its out-of-orderness after it) or the "
            "deadline; 'on this screen' adds the demo's own consumer."
        )
        job = sorted(rows["job"])
        job_p50 = job[len(job) // 2] if job else 0
        late = self.producer_report.get("late_over_50ms", 0)
        if job_p50 > 500 or late > 0.01 * max(self.produced, 1):
            say(
                f"  This machine did not keep up with {self.args.rate:,g} events/s this time "
                f"(the job's part p50 {job_p50} ms; {late:,} sends over 50 ms late): the figures "
                "include a backlog."
            )
            lower = " or with a lower --rate" if self.args.rate > 1000 else ""
            say(f"  Compare at a quieter time (see the load average){lower}.")


def _split(rows: dict, prefix: str, ready: int | None, since: int, done: int) -> None:
    """A delay from `since` to `done` as the wait for the input (until `ready`) and the job's."""
    if ready is not None:
        rows[prefix + "input"].append(max(ready - since, 0))
        rows[prefix + "job"].append(done - max(ready, since))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # The defaults are the benchmark's live setup (bench/README.md "Latency").
    parser.add_argument("--duration", type=float, default=60, help="seconds of events")
    parser.add_argument("--rate", type=float, default=5000, help="events per second")
    parser.add_argument("--users", type=int, default=100_000, help="u-401 on are not in the CRM")
    parser.add_argument("--bound", default="100ms", help="the job's --max-out-of-orderness")
    parser.add_argument("--out-of-order-ms", type=int, default=100, help="the stream's disorder")
    parser.add_argument("--idle-fire-after", default="1s", help="the job's --idle-fire-after")
    parser.add_argument("--show-every", type=float, default=5, help="s between a rule's lines")
    parser.add_argument("--warmup", type=float, default=20, help="s of JIT warm-up, shown apart")
    parser.add_argument("--rules", type=Path, default=ROOT / "examples" / "demo_rules.yaml")
    return Demo(parser.parse_args()).main()


if __name__ == "__main__":
    sys.exit(main())
