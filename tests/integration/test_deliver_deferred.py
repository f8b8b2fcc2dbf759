"""`moments deliver` on a real Kafka broker honours `deliver_at`: a deferred action is delivered no
earlier than it while the actions after it on the same partition go at once, and a deliverer
killed while it holds one loses nothing: its successor delivers it, once."""

from __future__ import annotations

import signal
import threading
import time
import uuid

import pytest

from moments_testing.vendors import BrazeServer
from tests.helpers import wait_for
from tests.integration.test_deliver import committed_everything, produce, start_job
from tests.unit.vendors.actions import make_action

pytestmark = pytest.mark.integration


class Sightings:
    """Polls the vendor every 10 ms: when each action id was first seen as accepted, and the last
    poll that had not seen it yet (so "not before" is proven, not guessed from a late poll)."""

    def __init__(self, server: BrazeServer):
        self.server = server
        self.first_seen: dict[str, float] = {}
        self.last_unseen: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def watch(self, *action_ids: str) -> Sightings:
        self.watched = action_ids
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.wait(0.01):
            polled_at = time.time()
            delivered = self.server.delivered_ids()
            for action_id in self.watched:
                if action_id in delivered:
                    self.first_seen.setdefault(action_id, polled_at)
                else:
                    self.last_unseen[action_id] = polled_at

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def deferred_pair(run: str, delay_s: float):
    """An action deferred by `delay_s` and one produced after it without deliver_at."""
    now_ms = int(time.time() * 1000)
    deferred = make_action(
        user_id="u-late",
        rule_id=run,
        trigger_ts=now_ms,
        destinations=("braze",),
        deliver_at=now_ms + int(delay_s * 1000),
    )
    plain = make_action(user_id="u-now", rule_id=run, trigger_ts=now_ms, destinations=("braze",))
    return deferred, plain


def warmed_up_job(kafka_bootstrap, topic, dlq_topic, group, env, braze, run):
    """A running job that has delivered one action, so it reads the topic from now on."""
    job = start_job(kafka_bootstrap, topic, dlq_topic, group, env)
    warm = make_action(user_id="u-warm", rule_id=run, destinations=("braze",))
    produce(kafka_bootstrap, topic, [warm])
    wait_for(
        lambda: warm.action_id in braze.delivered_ids(), timeout=30, message="the job to start"
    )
    return job


def stop(job) -> tuple[str, str]:
    if job.poll() is None:
        job.send_signal(signal.SIGTERM)
    try:
        return job.communicate(timeout=30)
    finally:
        if job.poll() is None:
            job.kill()


def test_a_deferred_action_waits_and_does_not_hold_up_its_partition(
    kafka_bootstrap, kafka_topic, kafka_admin
):
    topic, dlq_topic = kafka_topic(partitions=1), kafka_topic()
    group, run = f"deliver-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex[:8]
    with BrazeServer() as braze:
        env = {"BRAZE_API_KEY": braze.api_key, "BRAZE_REST_ENDPOINT": braze.url}
        job = warmed_up_job(kafka_bootstrap, topic, dlq_topic, group, env, braze, run)
        try:
            deferred, plain = deferred_pair(run, delay_s=2.0)
            sightings = Sightings(braze).watch(deferred.action_id, plain.action_id)
            produced_at = time.time()
            produce(kafka_bootstrap, topic, [deferred, plain])
            wait_for(
                lambda: deferred.action_id in sightings.first_seen,
                timeout=20,
                message="the deferred action",
            )
            sightings.close()
        finally:
            out, err = stop(job)
        assert job.returncode == 0, err
    due_s = deferred.deliver_at / 1000
    assert sightings.first_seen[plain.action_id] - produced_at < 1.5  # at once, not after it
    assert sightings.first_seen[plain.action_id] < due_s
    assert sightings.last_unseen[deferred.action_id] >= due_s - 0.05  # none before deliver_at
    assert braze.duplicates() == 0
    assert "deferred (held until deliver_at): 1" in out
    assert committed_everything(kafka_admin, kafka_bootstrap, group, topic)


def test_a_deliverer_killed_while_holding_an_action_loses_nothing(
    kafka_bootstrap, kafka_topic, kafka_admin, crm_dsn
):
    topic, dlq_topic = kafka_topic(partitions=1), kafka_topic()
    group, run = f"deliver-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex[:8]
    with BrazeServer() as braze:
        env = {
            "BRAZE_API_KEY": braze.api_key,
            "BRAZE_REST_ENDPOINT": braze.url,
            "DELIVER_LEDGER_DSN": crm_dsn,
        }
        first = warmed_up_job(kafka_bootstrap, topic, dlq_topic, group, env, braze, run)
        try:
            deferred, plain = deferred_pair(run, delay_s=4.0)
            produce(kafka_bootstrap, topic, [deferred, plain])
            wait_for(
                lambda: plain.action_id in braze.delivered_ids(),
                timeout=20,
                message="the action after the deferred one",
            )
            time.sleep(0.5)  # past the commit that follows it
            first.send_signal(signal.SIGKILL)
            first.communicate(timeout=30)
        finally:
            if first.poll() is None:
                first.kill()
        assert deferred.action_id not in braze.delivered_ids()
        assert not committed_everything(kafka_admin, kafka_bootstrap, group, topic)

        second = start_job(kafka_bootstrap, topic, dlq_topic, group, env, "--max-idle", "2s")
        out, err = second.communicate(timeout=90)
        assert second.returncode == 0, err
    accepted = braze.accepted
    assert accepted[deferred.action_id] == 1  # delivered after the restart, once
    assert accepted[plain.action_id] == 1  # read again, skipped: the ledger holds it accepted
    assert braze.duplicates() == 0
    assert "duplicates skipped: 1" in out
    assert committed_everything(kafka_admin, kafka_bootstrap, group, topic)
