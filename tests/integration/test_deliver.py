"""`moments deliver` on a real Kafka broker against the strict vendor servers: nothing read is lost,
duplicates are bounded and carry the same id, permanent failures land in the dead-letter topic, and
a job killed mid-way (SIGKILL) or stopped (SIGTERM) resumes without losing what it had read and,
with the ledger, without sending again what was accepted (only ambiguous sends, counted)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from jobs import cli
from moments_testing.vendors import BrazeServer, Faults, IterableServer
from tests.helpers import wait_for
from tests.unit.vendors.actions import make_action

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
VENDOR_ENV_NAMES = (
    "BRAZE_API_KEY",
    "BRAZE_API_KEY_FILE",
    "BRAZE_REST_ENDPOINT",
    "ITERABLE_API_KEY",
    "ITERABLE_API_KEY_FILE",
    "ITERABLE_API_ENDPOINT",
    "DELIVER_RATE_LIMITS",
    "DELIVER_LEDGER_DSN",
    "DELIVER_LEDGER_DSN_FILE",
    "DELIVER_METRICS_ADDRESS",
)


def vendor_env(braze: BrazeServer, iterable: IterableServer) -> dict[str, str]:
    return {
        "BRAZE_API_KEY": braze.api_key,
        "BRAZE_REST_ENDPOINT": braze.url,
        "ITERABLE_API_KEY": iterable.api_key,
        "ITERABLE_API_ENDPOINT": iterable.url,
    }


def produce(bootstrap: str, topic: str, actions) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for action in actions:
        producer.send(topic, key=action.user_id.encode(), value=action.to_json_bytes())
    producer.flush()
    producer.close()


def read_all(bootstrap: str, topic: str, expected: int) -> list[dict]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    seen: list[dict] = []

    def enough():
        for records in consumer.poll(timeout_ms=200).values():
            seen.extend(json.loads(r.value) for r in records)
        return len(seen) >= expected

    try:
        if expected:
            wait_for(enough, timeout=20, message=f"{expected} records on {topic}")
        else:
            consumer.poll(timeout_ms=1000)
    finally:
        consumer.close()
    return seen


def committed_everything(kafka_admin, bootstrap: str, group: str, topic: str) -> bool:
    from kafka import KafkaConsumer, TopicPartition

    offsets = kafka_admin.list_consumer_group_offsets(group)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        ends = consumer.end_offsets(partitions)
    finally:
        consumer.close()
    return all(offsets.get(tp) is not None and offsets[tp].offset == ends[tp] for tp in partitions)


def test_topic_delivery_with_faults_and_dead_letters(
    kafka_bootstrap, kafka_topic, kafka_admin, monkeypatch, capsys
):
    actions_topic, dlq_topic = kafka_topic(partitions=2), kafka_topic()
    group = f"deliver-{uuid.uuid4().hex[:8]}"
    good = [
        make_action(
            user_id=f"u-{i}",
            trigger_ts=1763805645000 + i,
            destinations=("kafka", "braze", "iterable")[: 1 + 1 + i % 2],
        )
        for i in range(300)
    ]
    campaign = [make_action(user_id=f"c-{i}", campaign_id="known", rule_id="r2") for i in range(60)]
    unknown_campaign = [make_action(user_id="x-1", campaign_id="nope", rule_id="r3")]
    forgotten = [make_action(user_id="gone", destinations=("iterable",), rule_id="r4")]
    everything = good + campaign + unknown_campaign + forgotten
    produce(kafka_bootstrap, actions_topic, everything + good[:20])  # + an upstream replay

    faults = Faults(error_500=0.1, drop_before=0.03, drop_after=0.03, slow=0.04, slow_s=0.8)
    with (
        BrazeServer(faults=faults, known_campaigns={"known"}) as braze,
        IterableServer(
            faults=Faults(error_500=0.1, seed=3), forgotten_user_ids={"gone"}
        ) as iterable,
    ):
        for name in VENDOR_ENV_NAMES:
            monkeypatch.delenv(name, raising=False)
        for name, value in vendor_env(braze, iterable).items():
            monkeypatch.setenv(name, value)
        code = cli.main(
            [
                "deliver",
                "--bootstrap-servers",
                kafka_bootstrap,
                "--topic",
                actions_topic,
                "--dlq-topic",
                dlq_topic,
                "--group-id",
                group,
                "--max-idle",
                "2s",
                "--batch-size",
                "100",
                "--timeout",
                "500ms",
                "--backoff-base",
                "20ms",
                "--backoff-max",
                "200ms",
                "--max-attempts",
                "10",
            ]
        )
        assert code == 0
        to_braze = {a.action_id for a in good + campaign if "braze" in a.destinations}
        to_iterable = {a.action_id for a in good if "iterable" in a.destinations}
        assert braze.delivered_ids() == to_braze
        assert iterable.delivered_ids() == to_iterable
        # Duplicates only from requests accepted but answered late / dropped, each <= one batch.
        accepted_late = braze.statuses["slow"] + braze.statuses["drop_after"]
        assert braze.duplicates() <= 75 * accepted_late
        assert iterable.duplicates() == 0  # no late/dropped-after faults there

    letters = read_all(kafka_bootstrap, dlq_topic, expected=2)
    assert len(letters) == 2
    by_user = {letter["action"]["user_id"]: letter for letter in letters}
    assert by_user["x-1"]["destination"] == "braze" and by_user["x-1"]["status"] == 400
    assert "Invalid campaign_id" in by_user["x-1"]["response"]
    assert by_user["gone"]["destination"] == "iterable"
    assert "forgottenUserIds" in by_user["gone"]["reason"]
    assert committed_everything(kafka_admin, kafka_bootstrap, group, actions_topic)
    assert "duplicates skipped: 20" in capsys.readouterr().out


def start_job(bootstrap, topic, dlq_topic, group, env, *extra) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jobs.cli",
            "deliver",
            "--bootstrap-servers",
            bootstrap,
            "--topic",
            topic,
            "--dlq-topic",
            dlq_topic,
            "--group-id",
            group,
            "--batch-size",
            "50",
            "--linger",
            "50ms",
            *extra,
        ],
        cwd=ROOT,
        env={**{k: v for k, v in os.environ.items() if k not in VENDOR_ENV_NAMES}, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def ledger_ambiguous(dsn: str, action_ids: list[str]) -> int:
    import psycopg

    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(ambiguous), 0) FROM moments_delivery_ledger "
            "WHERE action_id = ANY(%s)",
            (action_ids,),
        ).fetchone()
    return int(row[0])


@pytest.mark.parametrize("how", ["sigkill", "sigterm"])
def test_restart_loses_nothing_it_had_read(kafka_bootstrap, kafka_topic, kafka_admin, crm_dsn, how):
    actions_topic, dlq_topic = kafka_topic(partitions=2), kafka_topic()
    group = f"deliver-{uuid.uuid4().hex[:8]}"
    run = uuid.uuid4().hex[:8]  # new action ids: the ledger remembers earlier runs' ones
    actions = [
        make_action(
            user_id=f"u-{i}", trigger_ts=1763805645000 + i, destinations=("braze",), rule_id=run
        )
        for i in range(500)
    ]
    produce(kafka_bootstrap, actions_topic, actions)
    # Server-side limit of 4 requests/s (each at most 50 actions): the job is mid-way for seconds.
    with BrazeServer(rate_limits={"braze.users_track": (4, 1.0)}) as braze:
        env = {
            "BRAZE_API_KEY": braze.api_key,
            "BRAZE_REST_ENDPOINT": braze.url,
            "DELIVER_LEDGER_DSN": crm_dsn,
            # The server's own limit: a shared schedule must not slow the test further.
            "DELIVER_RATE_LIMITS": "braze.users_track=4/1s",
        }
        first = start_job(kafka_bootstrap, actions_topic, dlq_topic, group, env)
        try:
            wait_for(
                lambda: len(braze.delivered_ids()) >= 150,
                timeout=30,
                message="the first job to deliver some actions",
            )
            first.send_signal(signal.SIGKILL if how == "sigkill" else signal.SIGTERM)
            out, err = first.communicate(timeout=30)
        finally:
            if first.poll() is None:
                first.kill()
        if how == "sigterm":
            assert first.returncode == 0, err
            assert "records read" in out
        delivered_before_restart = len(braze.delivered_ids())
        assert delivered_before_restart < len(actions), "the job finished before it was stopped"

        second = start_job(
            kafka_bootstrap, actions_topic, dlq_topic, group, env, "--max-idle", "2s"
        )
        out, err = second.communicate(timeout=60)
        assert second.returncode == 0, err
        assert braze.delivered_ids() == {a.action_id for a in actions}
        # The ledger holds what was accepted: only a request in flight at the SIGKILL can reach
        # the vendor twice, and the ledger counts it as ambiguous. SIGTERM lets it finish.
        ambiguous = ledger_ambiguous(crm_dsn, [a.action_id for a in actions])
        assert braze.duplicates() <= ambiguous <= 50
        if how == "sigterm":
            assert braze.duplicates() == ambiguous == 0
    assert committed_everything(kafka_admin, kafka_bootstrap, group, actions_topic)
    assert read_all(kafka_bootstrap, dlq_topic, expected=0) == []
    for secret in (braze.api_key,):
        assert secret not in out + err
