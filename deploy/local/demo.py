"""`make demo`: the whole system on this machine, live, for about a minute, then cleaned up.

Starts (or reuses) the local Kafka and PostgreSQL, local Braze- and Iterable-compatible endpoints
(the strict stand-ins the tests use), the detection job (`moments run`, Kafka mode, on a Flink
MiniCluster) and the delivery job (`moments deliver`); feeds a generated stream of a few hundred
users in real time; prints every action as it lands on the actions topic and what the vendors
accepted; then stops what it started. Topics are per run, so runs never see each other's data.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from kafka import KafkaConsumer, KafkaProducer  # noqa: E402
from kafka.admin import KafkaAdminClient, NewTopic  # noqa: E402

from jobs.settings import LOCAL_CRM_DSN, LOCAL_KAFKA_BOOTSTRAP  # noqa: E402
from tests.vendor_servers import BrazeServer, IterableServer  # noqa: E402
from udfs.generator import GeneratorSettings, generate  # noqa: E402

RUN_DIR = ROOT / ".run" / "demo"
BIN = ROOT / ".venv" / "bin"
REST_PORT = 8091


def say(text: str = "") -> None:
    print(text, flush=True)


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
        self.processes: dict[str, subprocess.Popen] = {}
        self.actions: list[dict] = []
        self.latencies_ms: list[int] = []
        self.stop_display = threading.Event()
        self.produced = 0
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
        admin.create_topics([NewTopic(t, partitions.get(n, 1), 1) for n, t in self.topics.items()])
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
                "500ms",
                "--idle-fire-after",
                "1s",
                "--checkpoint-interval",
                "5s",
                "--checkpoint-dir",
                str(RUN_DIR / "checkpoints"),
                "--rest-port",
                str(REST_PORT),
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

    def wait_for_detection_job(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        url = f"http://127.0.0.1:{REST_PORT}/jobs/overview"
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
    def produce(self) -> None:
        """Pace a generated stream in real time: each event is sent when its arrival comes."""
        args = self.args
        now_ms = int(time.time() * 1000)
        settings = GeneratorSettings(
            users=args.users,
            events=int(args.rate * args.duration),
            seed=int(self.run_id),
            start_ts=now_ms,
            events_per_second=args.rate,
            noise=0.5,
            out_of_order_ms=300,
        )
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5)
        started = time.monotonic()
        for event in generate(settings):
            wait = (event["ts"] - now_ms) / 1000 - (time.monotonic() - started)
            if wait > 0:
                time.sleep(wait)  # pacing a real-time feed, not synchronisation
            producer.send(
                self.topics["events"],
                key=event["user_id"].encode(),
                value=json.dumps(event).encode(),
            )
            self.produced += 1
        for raw in (b"{not json", b'{"event_id":"x","user_id":"u-1","ts":1}'):
            producer.send(self.topics["events"], key=b"u-1", value=raw)  # two bad records
        producer.flush()
        producer.close()

    def display(self) -> None:
        consumer = KafkaConsumer(
            self.topics["actions"],
            bootstrap_servers=self.bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            consumer_timeout_ms=200,
        )
        while not self.stop_display.is_set():
            for record in consumer:
                action = json.loads(record.value)
                received = int(time.time() * 1000)
                latency = received - action["trigger_ts"]
                self.actions.append(action)
                self.latencies_ms.append(latency)
                say(
                    f"  {time.strftime('%H:%M:%S')}  {action['rule_id']:<14} "
                    f"{action['user_id']:<7} trigger {action['trigger_ts'] % 100_000:>6}ms "
                    f"latency {latency:>5} ms  enrichment {action['enrichment']:<11} "
                    f"-> {','.join(action['destinations'])}"
                )
        consumer.close()

    def drain(self, quiet_s: float = 6, limit_s: float = 40) -> None:
        """Wait until the last silence/absence deadlines fired and delivery caught up."""
        deadline = time.monotonic() + limit_s
        last, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            if len(self.actions) != last:
                last, since = len(self.actions), time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                return
            time.sleep(0.5)

    def stop_processes(self) -> None:
        for name in ("deliver", "detect"):
            process = self.processes.get(name)
            if process is None or process.poll() is not None:
                continue
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def cleanup(self) -> None:
        self.stop_display.set()
        self.stop_processes()
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
        say("     and the delivery job reading its actions topic")
        say(
            f"  4. feed {args.users} users, {args.rate:g} events/s for {args.duration:g} s, "
            "out of order by up to 300 ms"
        )
        say("  5. show each action as it lands, then what the vendors accepted; stop everything")
        say()
        braze = BrazeServer(api_key=secrets.token_hex(16))
        iterable = IterableServer(api_key=secrets.token_hex(16))
        try:
            self.start_infra()
            self.create_topics()
            braze.start()
            iterable.start()
            self.start_jobs(braze, iterable)
            say("  waiting for the detection job to run ...")
            self.wait_for_detection_job()
            say(
                "  running. Actions (time, rule, user, trigger ts mod 100 s, end-to-end latency "
                "from trigger to this screen, enrichment, destinations):"
            )
            shower = threading.Thread(target=self.display, daemon=True)
            shower.start()
            self.produce()
            say(f"  ... {self.produced} events sent; waiting for the last deadlines to fire")
            self.drain()
            self.stop_display.set()
            shower.join(timeout=5)
            self.report(braze, iterable)
        finally:
            braze.stop()
            iterable.stop()
            self.cleanup()
        say()
        say(
            f"Logs: {RUN_DIR}/detect.log, {RUN_DIR}/deliver.log, .run/kafka/server.log, "
            ".run/postgres/"
        )
        return 0

    def report(self, braze: BrazeServer, iterable: IterableServer) -> None:
        per_rule = Counter(a["rule_id"] for a in self.actions)
        enrichment = Counter(a["enrichment"] for a in self.actions)
        say()
        say(f"Summary: {self.produced} events (+2 invalid) -> {len(self.actions)} actions")
        for rule, n in sorted(per_rule.items()):
            say(f"  {rule:<14} {n}")
        say(f"  enrichment: {dict(enrichment)}")
        if self.latencies_ms:
            lat = sorted(self.latencies_ms)
            say(
                f"  latency trigger -> screen: p50 {statistics.median(lat):.0f} ms, "
                f"p95 {lat[int(0.95 * (len(lat) - 1))]} ms (deadline rules include "
                "idle-fire-after when the user's partition is quiet)"
            )
        want_braze = {a["action_id"] for a in self.actions if "braze" in a["destinations"]}
        want_iterable = {a["action_id"] for a in self.actions if "iterable" in a["destinations"]}
        say(
            f"  Braze accepted {len(braze.delivered_ids() & want_braze)}/{len(want_braze)} "
            f"(requests {braze.requests}); Iterable accepted "
            f"{len(iterable.delivered_ids() & want_iterable)}/{len(want_iterable)} "
            f"(requests {iterable.requests})"
        )
        sample = next(iter(braze.accepted_items.values()), None)
        if sample:
            say(f"  a Braze event as received: {json.dumps(sample)[:300]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60, help="seconds of events")
    parser.add_argument("--rate", type=float, default=40, help="events per second")
    parser.add_argument("--users", type=int, default=450, help="u-401 and up are not in the CRM")
    parser.add_argument("--rules", type=Path, default=ROOT / "examples" / "demo_rules.yaml")
    return Demo(parser.parse_args()).main()


if __name__ == "__main__":
    sys.exit(main())
