"""Delivery acceptance benchmark: N actions (default 10,000) on a Kafka topic, delivered by two
`moments deliver` replicas sharing the topic, the ledger and the rate limits, one of them SIGKILLed
three times during the run (restarted at once), against the strict local Braze and Iterable
servers with 10% injected failures. Prints figures: lost, duplicates, ambiguous sends (from the
ledger), 429s, and the most requests each server saw in any window of its limit.

    .venv/bin/python bench/deliver_bench.py [--actions 10000] [--failure-rate 0.10] [--kills 3]
        [--replicas 2] [--rate-limit-scope shared|process]

Needs the local Kafka and PostgreSQL (`make infra-up`, or KAFKA_BOOTSTRAP_SERVERS and
DELIVER_LEDGER_DSN). Failures are per request: 50% of them 500s, 20% slow responses past the
client timeout, 15% connections dropped before the request is accepted, 15% dropped after (the
slow and dropped-after ones are accepted but the client cannot know: ambiguous). The servers
enforce the same limits the clients are given: any 429 from a limit means the clients exceeded it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jobs.settings import LOCAL_CRM_DSN, LOCAL_KAFKA_BOOTSTRAP  # noqa: E402
from moments_testing.vendors import BrazeServer, Faults, IterableServer  # noqa: E402
from schemas.action import Action, action_id  # noqa: E402

# The vendors' limits, scaled down so a 10,000-action run is rate-limited for a minute and the
# stand-ins' counts mean something: the clients get exactly these (DELIVER_RATE_LIMITS).
SERVER_BRAZE_LIMITS = {"braze.users_track": (4, 1.0), "braze.messaging": (2, 1.0)}
SERVER_ITERABLE_LIMITS = {"iterable.track_bulk": (1, 1.0), "iterable.trigger_workflow": (5, 1.0)}


def make_actions(count: int, rng: random.Random, run: str) -> list[Action]:
    actions = []
    for i in range(count):
        user_id = f"u-{i % (count // 3 or 1)}"
        trigger_ts = 1763805600000 + i * 37
        roll = rng.random()
        extra: dict = {}
        if roll < 0.50:
            destinations = ["kafka", "braze"]
        elif roll < 0.80:
            destinations = ["kafka", "iterable"]
        elif roll < 0.945:
            destinations = ["kafka", "braze", "iterable"]
        elif roll < 0.995:
            destinations, extra = ["braze"], {"campaign_id": f"camp-{i % 3}"}
        else:
            destinations, extra = ["iterable"], {"workflow_id": 4242}
        rule_id = f"rule_{i % 4}_{run}"  # new action ids per run: the ledger remembers
        actions.append(
            Action(
                action_id=action_id(rule_id, user_id, trigger_ts),
                rule_id=rule_id,
                action="cart_nudge",
                user_id=user_id,
                trigger_ts=trigger_ts,
                detected_at=trigger_ts + 40,
                event_ids=[f"e-{i}"],
                destinations=destinations,
                profile={"email": f"{user_id}@example.com", "segment": "vip", "first_name": "A"},
                enrichment="ok",
                properties={"sku": f"SKU-{i % 50}", "price": 9.99},
                **extra,
            )
        )
    return actions


def faults(rate: float, seed: int, slow_s: float) -> Faults:
    return Faults(
        error_500=rate * 0.5,
        slow=rate * 0.2,
        slow_s=slow_s,
        drop_before=rate * 0.15,
        drop_after=rate * 0.15,
        seed=seed,
    )


def client_limits() -> str:
    limits = {**SERVER_BRAZE_LIMITS, **SERVER_ITERABLE_LIMITS}
    return ",".join(f"{name}={n}/{int(window)}s" for name, (n, window) in limits.items())


def produce(bootstrap: str, topic: str, actions: list[Action], partitions: int) -> None:
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, partitions, 1), NewTopic(topic + ".dlq", 1, 1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    for action in actions:
        producer.send(topic, key=action.user_id.encode(), value=action.to_json_bytes())
    producer.flush()
    producer.close()


def delete_topics(bootstrap: str, topic: str) -> None:
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.delete_topics([topic, topic + ".dlq"])
    finally:
        admin.close()


class Replica:
    """One `moments deliver` process of the group; `kill()` is a SIGKILL, `start()` a restart."""

    def __init__(self, index: int, argv: list[str], env: dict, logs: Path):
        self.index, self.argv, self.env, self.logs = index, argv, env, logs
        self.starts, self.process = 0, None

    def start(self) -> None:
        self.starts += 1
        log = (self.logs / f"replica{self.index}.{self.starts}.log").open("w")
        self.process = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: os.nice(-os.nice(0)),  # back to the default priority
        )

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()


def ledger_ambiguous(dsn: str, run: str) -> dict[str, int]:
    import psycopg

    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT l.destination, sum(l.ambiguous) FROM moments_delivery_ledger l "
            "WHERE l.action_id = ANY(%s) GROUP BY l.destination",
            (list(ACTION_IDS[run]),),
        ).fetchall()
    return {destination: int(total) for destination, total in rows}


ACTION_IDS: dict[str, set[str]] = {}


def run_replicas(options, servers, topic: str, logs: Path, expected: int) -> dict:
    """Start the replicas, SIGKILL one at each kill point (share of deliveries), restart it at
    once, and wait for every delivery; returns what happened."""
    braze, iterable = servers
    env = {
        **os.environ,
        "BRAZE_API_KEY": braze.api_key,
        "BRAZE_REST_ENDPOINT": braze.url,
        "ITERABLE_API_KEY": iterable.api_key,
        "ITERABLE_API_ENDPOINT": iterable.url,
        "DELIVER_LEDGER_DSN": options.ledger_dsn,
        "DELIVER_RATE_LIMITS": client_limits(),
    }
    argv = [
        sys.executable, "-m", "jobs.cli", "deliver", "--bootstrap-servers", options.bootstrap,
        "--topic", topic, "--dlq-topic", topic + ".dlq", "--group-id", f"bench-{topic}",
        "--batch-size", "500", "--linger", "500ms", "--timeout", options.timeout,
        "--backoff-base", "200ms", "--backoff-max", "5s", "--max-attempts", "10",
        "--max-rate-limited", "100", "--rate-limit-scope", options.rate_limit_scope,
        "--rate-limit-headroom", str(options.headroom),
    ]  # fmt: skip
    replicas = [Replica(i, argv, env, logs) for i in range(options.replicas)]
    for replica in replicas:
        replica.start()
    kill_points = [(k + 1) / (options.kills + 1) for k in range(options.kills)]
    kills: list[dict] = []
    started = time.monotonic()
    delivered = 0
    while time.monotonic() - started < options.deadline_s:
        delivered = len(braze.delivered_ids()) + len(iterable.delivered_ids())
        if delivered >= expected:
            break
        if kill_points and delivered >= kill_points[0] * expected:
            victim = replicas[len(kills) % len(replicas)]
            victim.kill()
            kills.append({"replica": victim.index, "at_deliveries": delivered,
                          "at_s": round(time.monotonic() - started, 1)})  # fmt: skip
            victim.start()
            kill_points.pop(0)
        time.sleep(0.2)
    seconds = time.monotonic() - started
    for replica in replicas:
        replica.stop()
    return {"seconds": round(seconds, 1), "kills": kills, "delivered": delivered}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--actions", type=int, default=10_000)
    parser.add_argument("--failure-rate", type=float, default=0.10)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", default="1s", help="client HTTP timeout")
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--rate-limit-scope", choices=("shared", "process"), default="shared")
    parser.add_argument("--headroom", type=float, default=0.1, help="--rate-limit-headroom")
    parser.add_argument("--deadline-s", type=float, default=900)
    parser.add_argument(
        "--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", LOCAL_KAFKA_BOOTSTRAP)
    )
    parser.add_argument("--ledger-dsn", default=os.environ.get("DELIVER_LEDGER_DSN", LOCAL_CRM_DSN))
    options = parser.parse_args()

    if os.geteuid() == 0:
        # The stand-ins live in this process: scheduled ahead of the replicas on a loaded host,
        # they timestamp a request when it arrives, as a vendor's own servers would.
        os.nice(-10)
    run = uuid.uuid4().hex[:8]
    actions = make_actions(options.actions, random.Random(options.seed), run)
    ACTION_IDS[run] = {a.action_id for a in actions}
    topic = f"bench.deliver.{run}"
    produce(options.bootstrap, topic, actions, options.partitions)
    slow_s = 1.5
    braze = BrazeServer(
        rate_limits=SERVER_BRAZE_LIMITS, faults=faults(options.failure_rate, options.seed, slow_s)
    )
    iterable = IterableServer(
        rate_limits=SERVER_ITERABLE_LIMITS,
        faults=faults(options.failure_rate, options.seed + 1, slow_s),
    )
    want_braze = {a.action_id for a in actions if "braze" in a.destinations}
    want_iterable = {a.action_id for a in actions if "iterable" in a.destinations}
    expected = len(want_braze) + len(want_iterable)
    try:
        with braze, iterable, tempfile.TemporaryDirectory(prefix="deliver-bench-") as tmp:
            happened = run_replicas(options, (braze, iterable), topic, Path(tmp), expected)
            figures = summarise(options, actions, (braze, iterable), happened, run)
    finally:
        delete_topics(options.bootstrap, topic)
    print(json.dumps(figures, indent=2))
    lost, duplicates = figures["lost"], figures["duplicates"]
    ambiguous = sum(figures["ambiguous_sends_by_destination"].values())
    over = {k: v for k, v in figures["peak_requests_per_window"].items() if v["over_limit"]}
    print(
        f"\n{expected} deliveries of {len(actions)} actions, {options.replicas} replicas, "
        f"{len(happened['kills'])} SIGKILLs, {happened['seconds']}s: lost {lost}; duplicates "
        f"{duplicates} (ambiguous sends {ambiguous}); 429s {figures['server_429s']}; endpoints "
        f"over their limit: {over or 'none'}"
    )
    return 0 if lost == 0 and duplicates <= ambiguous and not over else 1


def summarise(options, actions, servers, happened: dict, run: str) -> dict:
    braze, iterable = servers
    want_braze = {a.action_id for a in actions if "braze" in a.destinations}
    want_iterable = {a.action_id for a in actions if "iterable" in a.destinations}
    peaks = {}
    for server, limits in ((braze, SERVER_BRAZE_LIMITS), (iterable, SERVER_ITERABLE_LIMITS)):
        for endpoint, (limit, window_s) in limits.items():
            peak = server.peak_rate(endpoint, window_s)
            peaks[endpoint] = {
                "limit": f"{limit}/{window_s:g}s",
                **peak,
                "over_limit": peak["sliding"] > limit,
            }
    return {
        "actions": len(actions),
        "deliveries_expected": len(want_braze) + len(want_iterable),
        "replicas": options.replicas,
        "rate_limit_scope": options.rate_limit_scope,
        "rate_limit_headroom": options.headroom,
        **happened,
        "lost": len(want_braze - braze.delivered_ids())
        + len(want_iterable - iterable.delivered_ids()),
        "duplicates": braze.duplicates() + iterable.duplicates(),
        "duplicates_by_vendor": {"braze": braze.duplicates(), "iterable": iterable.duplicates()},
        "ambiguous_sends_by_destination": ledger_ambiguous(options.ledger_dsn, run),
        "server_429s": braze.statuses[429] + iterable.statuses[429],
        "peak_requests_per_window": peaks,
        "server_outcomes": {
            "braze": {str(k): v for k, v in braze.statuses.items()},
            "iterable": {str(k): v for k, v in iterable.statuses.items()},
        },
        "failure_rate_per_request": options.failure_rate,
    }


if __name__ == "__main__":
    sys.exit(main())
