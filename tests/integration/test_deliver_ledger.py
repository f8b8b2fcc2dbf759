"""The delivery ledger and the shared rate limits in a real PostgreSQL: one replica never takes
keys another live one holds, a dead replica's keys are taken over and their re-send counted as
ambiguous, a second run sends nothing, and two replicas together stay within a vendor's limit as
the strict stand-in counts it."""

from __future__ import annotations

import threading
import uuid

import pytest
from pydantic import SecretStr

from jobs import cli
from moments_testing.vendors import BrazeServer
from tests.helpers import wait_for
from tests.integration.test_deliver import VENDOR_ENV_NAMES
from tests.unit.vendors.actions import make_action, many
from udfs.delivery.assemble import build_deliverer
from udfs.delivery.pipeline import DeliveryPipeline, SourceRecord
from udfs.delivery.postgres import PostgresLedger, open_pool
from udfs.delivery.settings import DeliverySettings, VendorSettings, parse_rate_limits
from udfs.delivery.shared_limits import SharedRateLimiter
from udfs.vendors import RateLimit

pytestmark = pytest.mark.integration


@pytest.fixture
def pool(crm_dsn):
    pool = open_pool(crm_dsn, 4)
    yield pool
    pool.close()


def keys(count: int) -> list[tuple[str, str]]:
    run = uuid.uuid4().hex
    return [(f"{run}-{i}", "braze") for i in range(count)]


def test_a_live_owner_keeps_its_keys_and_a_dead_ones_are_taken_over_as_ambiguous(pool):
    first, second = PostgresLedger(pool, owner_timeout_s=1.0), PostgresLedger(pool, 1.0)
    wanted = keys(5)
    try:
        assert first.claim(wanted).granted == set(wanted)
        assert first.sending(wanted) == (True, set())
        assert second.claim(wanted).busy == set(wanted)
        first.accepted(wanted[:2])
        assert second.claim(wanted[:2]).accepted == set(wanted[:2])
        first._stop.set()  # the first replica dies: no more heartbeats, nothing retired
        taken = wait_for(lambda: second.claim(wanted[2:]).granted, timeout=10, interval=0.2)
        assert taken == set(wanted[2:])
        assert first.sending(wanted[2:])[0] is False  # it may not send what it lost
        assert second.sending(wanted[2:]) == (True, set(wanted[2:]))  # sent, outcome unknown
    finally:
        second.close()
        first._heartbeat.join()


def test_dead_keys_are_claimed_only_by_a_redrive(pool):
    ledger = PostgresLedger(pool)
    wanted = keys(2)
    try:
        ledger.claim(wanted)
        ledger.dead(wanted)
        assert ledger.claim(wanted).dead == set(wanted)
        assert ledger.claim(wanted, redrive=True).granted == set(wanted)
        ledger.accepted(wanted)
        assert ledger.claim(wanted, redrive=True).accepted == set(wanted)
    finally:
        ledger._stop.set()


def test_a_second_run_over_the_same_file_sends_nothing(crm_dsn, tmp_path, monkeypatch, capsys):
    actions = many(40, destinations=("kafka", "braze"), rule_id=f"r{uuid.uuid4().hex[:8]}")
    path = tmp_path / "actions.jsonl"
    path.write_bytes(b"\n".join(a.to_json_bytes() for a in actions) + b"\n")
    with BrazeServer() as braze:
        for name in VENDOR_ENV_NAMES:
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("BRAZE_API_KEY", braze.api_key)
        monkeypatch.setenv("BRAZE_REST_ENDPOINT", braze.url)
        monkeypatch.setenv("DELIVER_LEDGER_DSN", crm_dsn)
        assert cli.main(["deliver", "--actions", str(path)]) == 0
        assert cli.main(["deliver", "--actions", str(path)]) == 0
        assert len(braze.delivered_ids()) == 40 and braze.duplicates() == 0
    out = capsys.readouterr().out
    assert "deliveries: 40" in out and "deliveries: 0" in out and "duplicates skipped: 40" in out
    assert crm_dsn not in out


def settings(braze: BrazeServer, dsn: str, limit: str) -> DeliverySettings:
    return DeliverySettings(
        braze=VendorSettings(endpoint=braze.url, api_key=SecretStr(braze.api_key)),
        braze_profile_fields=(),
        iterable_profile_fields=(),
        rate_limits=parse_rate_limits([f"braze.users_track={limit}"]),
        max_attempts=5,
        backoff_base_s=0.05,
        backoff_max_s=0.2,
        max_rate_limited=50,
        timeout_s=5,
        concurrency=4,
        ledger_dsn=SecretStr(dsn),
    )


def test_two_replicas_share_the_vendors_limit(crm_dsn):
    limit, window_s = 5, 1.0
    with BrazeServer(rate_limits={"braze.users_track": (limit, window_s)}) as braze:
        replicas = [build_deliverer(settings(braze, crm_dsn, f"{limit}/1s")) for _ in range(2)]
        run = uuid.uuid4().hex[:8]
        # One action per request (each batch is one user): 2 x 12 requests at 5/s, ~5 s.
        batches = [
            [make_action(user_id=f"u-{run}-{r}-{i}", destinations=("braze",))]
            for r in range(2)
            for i in range(12)
        ]

        def work(replica, mine):
            pipeline = DeliveryPipeline(replica)
            for batch in mine:
                pipeline.process([SourceRecord(batch[0].to_json_bytes(), {})])

        threads = [
            threading.Thread(target=work, args=(replica, batches[i::2]))
            for i, replica in enumerate(replicas)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        for replica in replicas:
            replica.close()
        assert len(braze.delivered_ids()) == 24
        assert braze.statuses[429] == 0
        assert braze.peak_rate("braze.users_track", window_s)["sliding"] <= limit


def test_a_send_waits_for_the_answer_another_replica_has_not_had_yet(pool):
    # 1 per second: the second send, whichever replica makes it, waits until the first one's
    # answer is a second old; a first send never answered (its replica died) counts as answered
    # at its start plus the client timeout.
    endpoint = f"test.endpoint@{uuid.uuid4().hex[:8]}"
    one = [SharedRateLimiter(pool, endpoint, RateLimit(1, 1.0), 0.0, 3.0) for _ in range(2)]
    first, second = one[0].reserve(), one[1].reserve()
    assert second.seq == first.seq + 1 and second.wait_s == pytest.approx(1.0, abs=0.2)
    assert one[0].clear_in(first) == 0
    assert one[1].clear_in(second) == pytest.approx(4.0, abs=0.2)
    one[0].answered(first)
    assert one[1].clear_in(second) == pytest.approx(1.0, abs=0.2)
