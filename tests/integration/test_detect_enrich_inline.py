"""`--enrichment-layout inline` in Kafka mode: lookups on background threads of the detect
operator, actions held (not the operator) until their profile is known.

1. With the real PostgreSQL CRM the actions are the backtest's, enriched `ok` for users the CRM
   has and `missing` for the others.
2. With a CRM that accepts connections and never answers, every action still comes, as
   `unavailable`, and a silence deadline started at wall-clock now still fires by idle liveness.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from tests.helpers import wait_for
from tests.integration.detect_data import generate, write_inputs
from tests.integration.detect_kafka import (
    RunningJob,
    TopicReader,
    create_topics,
    kafka_args,
    produce,
    tear_down,
    wait_for_backlog,
)
from tests.integration.test_detect_file import backtest

pytestmark = pytest.mark.integration
CRM_USERS = 6  # user-0..user-5 become u-1..u-6, which the seeded CRM has


def crm_user_lines() -> tuple[list[str], list[dict]]:
    """The generated stream with its first users renamed to users the CRM knows."""
    lines, valid = generate(users=12, events_per_user=30, late=0, invalid=2)
    names = {f'"user-{n}"': f'"u-{n + 1}"' for n in range(CRM_USERS)}

    def rename(line: str) -> str:
        for old, new in names.items():
            line = line.replace(old, new)
        return line

    lines = [rename(line) for line in lines]
    return lines, [json.loads(rename(json.dumps(event))) for event in valid]


def comparable(action: dict) -> str:
    kept = {k: v for k, v in action.items() if k not in ("detected_at", "profile", "enrichment")}
    return json.dumps(kept, sort_keys=True)


@pytest.fixture
def silent_crm():
    """A TCP listener that accepts every connection and never sends a byte."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"postgresql://moments@127.0.0.1:{server.getsockname()[1]}/crm"
    stop.set()
    thread.join(timeout=2)
    for conn in accepted:
        conn.close()
    server.close()


def start_job(
    tmp_path, kafka_bootstrap, kafka_admin, monkeypatch, dsn: str, lines: list[str], budget_ms=200
):
    rules, _ = write_inputs(tmp_path, lines)
    topics = create_topics(kafka_admin, "inline", {"events": 1, "actions": 2, "dlq": 1, "late": 1})
    produce(kafka_bootstrap, topics["events"], lines)
    readers = {"actions": TopicReader(kafka_bootstrap, topics["actions"])}
    for name in ("CRM_BACKEND", "CRM_TABLE", "CRM_HTTP_URL", "CRM_DSN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CRM_DSN", dsn)
    monkeypatch.setenv("CRM_TIMEOUT_MS", str(budget_ms))
    args = [*kafka_args(kafka_bootstrap, topics, rules), "--max-out-of-orderness", "2s"]
    args += ["--idle-fire-after", "3s", "--enrichment-layout", "inline"]
    job = RunningJob(args, tmp_path / "job.log")
    return job, readers, topics


def test_actions_equal_the_backtest_and_carry_the_crm_profile(
    tmp_path, kafka_bootstrap, kafka_admin, monkeypatch, crm_dsn
):
    lines, valid = crm_user_lines()
    expected, _ = backtest(valid)
    # A generous budget: a loaded machine must not turn the first lookups (while the pool
    # connects) into `unavailable`; what is checked here is which profile each action gets.
    job, readers, topics = start_job(
        tmp_path, kafka_bootstrap, kafka_admin, monkeypatch, crm_dsn, lines, budget_ms=5_000
    )
    try:
        records = wait_for_backlog(job, readers["actions"], len(expected))
    finally:
        tear_down(job, readers, kafka_admin, topics)
    actions = [json.loads(r.value) for r in records]
    assert sorted(comparable(a) for a in actions) == sorted(
        comparable(json.loads(e)) for e in expected
    )
    for action in actions:
        known = action["user_id"].startswith("u-")
        assert action["enrichment"] == ("ok" if known else "missing"), action
        assert bool(action["profile"]) == known


def test_a_crm_that_never_answers_holds_back_no_action_and_no_deadline(
    tmp_path, kafka_bootstrap, kafka_admin, monkeypatch, silent_crm
):
    lines, valid = crm_user_lines()
    expected, _ = backtest(valid)
    job, readers, topics = start_job(
        tmp_path, kafka_bootstrap, kafka_admin, monkeypatch, silent_crm, lines
    )
    try:
        records = wait_for_backlog(job, readers["actions"], len(expected))
        live = {"event_id": "live-1", "user_id": "live-user", "event_type": "add_to_cart"}
        produce(kafka_bootstrap, topics["events"], [json.dumps(live | {"ts": _now_ms()})])

        def live_silence():
            return [
                a
                for a in (json.loads(r.value) for r in readers["actions"].poll())
                if a["user_id"] == "live-user" and a["rule_id"] == "cart_silence"
            ]

        (live_action,) = wait_for(live_silence, timeout=90, message="the live silence action")
    finally:
        tear_down(job, readers, kafka_admin, topics)
    actions = [json.loads(r.value) for r in records]
    assert sorted(comparable(a) for a in actions) == sorted(
        comparable(json.loads(e)) for e in expected
    )
    assert {a["enrichment"] for a in [*actions, live_action]} == {"unavailable"}


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
