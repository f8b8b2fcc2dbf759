"""A running `moments deliver` answers on its metrics endpoint with every series the dashboards and
alerts read: deliveries, retries, failures, dead letters and ambiguous sends per vendor and
endpoint, batch and request sizes, trigger-to-accepted latency, consumer lag, process start."""

from __future__ import annotations

import signal
import socket
import urllib.request
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from moments_testing.vendors import BrazeServer, Faults
from tests.helpers import wait_for
from tests.integration.test_deliver import produce, start_job
from tests.unit.vendors.actions import make_action

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(samples: dict, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


def test_the_metrics_endpoint_of_a_running_job(kafka_bootstrap, kafka_topic, crm_dsn):
    topic, dlq = kafka_topic(partitions=2), kafka_topic()
    run = uuid.uuid4().hex[:8]
    good = [
        make_action(user_id=f"u-{i}", destinations=("kafka", "braze"), rule_id=run)
        for i in range(40)
    ]
    # Iterable is not configured: a dead letter without a request, so the faults below hit
    # /users/track requests only, in order.
    bad = make_action(user_id="x", destinations=("iterable",), rule_id=run)
    produce(kafka_bootstrap, topic, [*good, bad])
    port = free_port()
    faults = Faults(queue=["500", "slow"], slow_s=1.0)
    with BrazeServer(faults=faults) as braze:
        env = {
            "BRAZE_API_KEY": braze.api_key,
            "BRAZE_REST_ENDPOINT": braze.url,
            "DELIVER_LEDGER_DSN": crm_dsn,
        }
        extra = ("--metrics-address", f"127.0.0.1:{port}", "--timeout", "400ms")
        job = start_job(kafka_bootstrap, topic, dlq, f"metrics-{run}", env, *extra)
        try:
            samples = wait_for(
                lambda: (s := scrape(port))
                and total(s, "moments_deliver_delivered_total") >= 40
                and total(s, "moments_deliver_dead_lettered_total") >= 1
                and s,
                timeout=60,
                interval=0.5,
                message="the job's metrics to count 40 deliveries and a dead letter",
                ignore=(OSError,),
            )
            # Lag is measured after a batch's commit: everything read is committed by now.
            wait_for(
                lambda: any(n == "moments_deliver_consumer_lag" for n, _ in scrape(port)),
                timeout=15,
                interval=0.5,
            )
        finally:
            job.send_signal(signal.SIGTERM)
            out, err = job.communicate(timeout=30)
    users_track = {"vendor": "braze", "endpoint": "/users/track"}
    assert total(samples, "moments_deliver_delivered_total", **users_track) == 40
    assert total(samples, "moments_deliver_retried_total", reason="server_error") >= 1
    assert total(samples, "moments_deliver_retried_total", reason="timeout") >= 1
    assert total(samples, "moments_deliver_failed_total", **users_track) >= 2
    assert total(samples, "moments_deliver_ambiguous_total", **users_track) >= 1
    assert total(samples, "moments_deliver_dead_lettered_total", vendor="iterable") == 1
    assert total(samples, "moments_deliver_batch_records_count") >= 1
    assert total(samples, "moments_deliver_request_actions_count", **users_track) >= 1
    latency = total(samples, "moments_deliver_trigger_to_accepted_seconds_count", **users_track)
    assert latency == 40
    assert total(samples, "process_start_time_seconds") > 0
    assert braze.api_key not in out + err and crm_dsn not in out + err
