"""The deliverer and the file pipeline against the strict loopback servers (no other network)."""

import json
import threading
import time

import pytest

from jobs import cli
from moments_testing.vendors import BrazeServer, Faults, IterableServer
from tests.unit.vendors.actions import make_action, many
from udfs.delivery.deliverer import Deliverer
from udfs.delivery.pipeline import DeliveryPipeline, SourceRecord
from udfs.delivery.transport import HttpTransport
from udfs.vendors import (
    BrazeAdapter,
    BrazeConfig,
    HttpRequest,
    IterableAdapter,
    IterableConfig,
    RateLimit,
    RateLimiter,
    RetryPolicy,
)

FAST = RetryPolicy(max_attempts=8, base_delay_s=0.01, max_delay_s=0.05, max_rate_limited=50)


@pytest.fixture
def braze():
    with BrazeServer() as server:
        yield server


@pytest.fixture
def iterable():
    with IterableServer() as server:
        yield server


def deliverer(
    braze=None,
    iterable=None,
    braze_key="braze-test-key",
    limits=None,
    stop=None,
    timeout_s=2.0,
    policy=FAST,
):
    adapters = {}
    if braze is not None:
        adapters["braze"] = BrazeAdapter(BrazeConfig(endpoint=braze.url, api_key=braze_key))
    if iterable is not None:
        adapters["iterable"] = IterableAdapter(
            IterableConfig(api_key="iterable-test-key", endpoint=iterable.url)
        )
    limiters = {name: RateLimiter(limit) for name, limit in (limits or {}).items()}
    return Deliverer(
        adapters,
        limiters,
        HttpTransport(timeout_s=timeout_s),
        policy=policy,
        concurrency=4,
        stop=stop,
    )


def raw_post(url, path, body, headers):
    request = HttpRequest(
        "t", "t", "POST", url + path, path, headers, json.dumps(body).encode(), ()
    )
    return HttpTransport(timeout_s=2).send(request)


def test_server_rejects_76_objects_with_brazes_400_body(braze):
    events = [
        {"external_id": f"u{i}", "name": "n", "time": "2025-01-01T00:00:00.000Z"} for i in range(76)
    ]
    response = raw_post(
        braze.url,
        "/users/track",
        {"events": events},
        {"Authorization": "Bearer braze-test-key", "Content-Type": "application/json"},
    )
    assert response.status == 400
    assert "at most 75" in response.json()["message"]
    assert response.json()["errors"] == []


def test_server_enforces_auth_content_type_and_seconds(braze, iterable):
    no_auth = raw_post(
        braze.url, "/users/track", {"events": []}, {"Content-Type": "application/json"}
    )
    assert no_auth.status == 401 and "message" in no_auth.json()
    wrong_type = raw_post(
        braze.url,
        "/users/track",
        {"events": []},
        {"Authorization": "Bearer braze-test-key", "Content-Type": "text/plain"},
    )
    assert wrong_type.status == 400
    millis = raw_post(
        iterable.url,
        "/api/events/track",
        {"eventName": "x", "userId": "u", "createdAt": 1763805645123},
        {"Api-Key": "iterable-test-key", "Content-Type": "application/json"},
    )
    assert millis.status == 400 and millis.json()["code"] == "BadParams"
    assert set(millis.json()) == {"msg", "code", "params"}


def test_every_action_reaches_every_destination(braze, iterable):
    actions = (
        many(200, destinations=("kafka", "braze", "iterable"))
        + many(60, campaign_id="c1", destinations=("braze",), rule_id="r2")
        + many(3, workflow_id=77, destinations=("iterable",), rule_id="r3")
    )
    results = deliverer(braze, iterable).deliver(actions)
    assert all(r.delivered for r in results), [r.reason for r in results if not r.delivered]
    assert braze.delivered_ids() == {a.action_id for a in actions if "braze" in a.destinations}
    assert iterable.delivered_ids() == {
        a.action_id for a in actions if "iterable" in a.destinations
    }
    assert braze.duplicates() == 0 and iterable.duplicates() == 0
    paths = {path for path, _ in braze.bodies}
    assert paths == {"/users/track", "/campaigns/trigger/send"}


def test_faults_lose_nothing_and_duplicates_carry_the_same_id():
    faults = Faults(queue=["500", "slow", "drop_before", "drop_after", "429", "500"], slow_s=0.6)
    with BrazeServer(faults=faults) as braze:
        actions = many(300)
        results = deliverer(braze, timeout_s=0.3).deliver(actions)
        assert all(r.delivered for r in results)
        assert braze.delivered_ids() == {a.action_id for a in actions}
        # Only the requests answered late or dropped after acceptance can have been duplicated.
        assert 0 < braze.duplicates() <= 2 * 75
        assert max(r.attempts for r in results) >= 2


def test_429_reset_is_honoured(braze):
    braze.rate_limits["braze.users_track"] = (2, 1.0)
    d = deliverer(braze)
    started = time.monotonic()
    results = d.deliver(many(75 * 5))
    assert all(r.delivered for r in results)
    assert d.stats.rate_limited >= 1
    assert time.monotonic() - started >= 1.0  # five requests at two per second
    assert braze.duplicates() == 0


def test_client_rate_limit_avoids_429s(iterable):
    iterable.rate_limits["iterable.track_bulk"] = (3, 1.0)
    config_limit = {"iterable.track_bulk": RateLimit(3, 1.0)}
    d = deliverer(iterable=iterable, limits=config_limit)
    actions = many(8, destinations=("iterable",))
    d.adapters["iterable"] = IterableAdapter(
        IterableConfig(api_key="iterable-test-key", endpoint=iterable.url, max_bulk_events=2)
    )
    assert all(r.delivered for r in d.deliver(actions))
    # Window edges can still let one through early; the server is the judge.
    assert iterable.statuses[429] <= 1


def test_permanent_4xx_is_final_after_one_attempt(braze):
    results = deliverer(braze, braze_key="wrong").deliver(many(3))
    assert [r.delivered for r in results] == [False] * 3
    assert {r.status for r in results} == {401}
    assert {r.attempts for r in results} == {1}
    assert "Invalid API key" in results[0].response


def test_partial_failures_are_per_action(iterable):
    iterable.forgotten_user_ids.add("u-1")
    results = deliverer(iterable=iterable).deliver(many(4, destinations=("iterable",)))
    failed = [r for r in results if not r.delivered]
    assert [r.action.user_id for r in failed] == ["u-1"]
    assert "forgottenUserIds" in failed[0].reason
    assert len(iterable.delivered_ids()) == 3


def test_retries_are_bounded():
    with BrazeServer(faults=Faults(error_500=1.0)) as braze:
        policy = RetryPolicy(max_attempts=3, base_delay_s=0.01, max_delay_s=0.02)
        results = deliverer(braze, policy=policy).deliver(many(2))
        assert {r.attempts for r in results} == {3}
        assert all(not r.delivered and r.status == 500 for r in results)
        assert "gave up after 3" in results[0].reason


def test_stop_returns_unfinished_instead_of_waiting():
    stop = threading.Event()
    with BrazeServer(faults=Faults(error_500=1.0)) as braze:
        policy = RetryPolicy(max_attempts=100, base_delay_s=5, max_delay_s=5)
        d = deliverer(braze, policy=policy, stop=stop)
        threading.Timer(0.3, stop.set).start()
        started = time.monotonic()
        results = d.deliver(many(2))
        assert time.monotonic() - started < 3
        assert all(not r.finished for r in results)


def test_pipeline_dead_letters_bad_records_and_unconfigured_destinations(braze):
    pipeline = DeliveryPipeline(deliverer(braze))
    good = make_action(destinations=("braze", "iterable"))
    records = [
        SourceRecord(good.to_json_bytes(), {"line": 1}),
        SourceRecord(b"{not json", {"line": 2}),
        SourceRecord(good.to_json_bytes(), {"line": 3}),  # replayed duplicate
    ]
    outcome = pipeline.process(records)
    assert outcome.finished == [True, True, True]
    assert outcome.delivered == 1 and outcome.skipped_duplicates == 1
    letters = [json.loads(v) for _, v in outcome.dead_letters]
    assert {(d["destination"], d["action"] is None) for d in letters} == {
        (None, True),
        ("iterable", False),
    }
    unconfigured = next(d for d in letters if d["destination"] == "iterable")
    assert "not configured" in unconfigured["reason"]
    assert unconfigured["action"]["action_id"] == good.action_id
    assert braze.accepted[good.action_id] == 1


def test_moments_deliver_file_mode(tmp_path, monkeypatch, capsys, braze, iterable):
    actions = many(120, destinations=("braze", "iterable")) + [
        make_action(user_id="bad", canvas_id="cv", campaign_id="c")
    ]
    path = tmp_path / "actions.jsonl"
    path.write_bytes(b"\n".join(a.to_json_bytes() for a in actions) + b"\n")
    monkeypatch.setenv("BRAZE_REST_ENDPOINT", braze.url)
    key_file = tmp_path / "braze.key"
    key_file.write_text("braze-test-key\n")
    monkeypatch.setenv("BRAZE_API_KEY_FILE", str(key_file))
    monkeypatch.delenv("BRAZE_API_KEY", raising=False)
    monkeypatch.setenv("ITERABLE_API_KEY", "iterable-test-key")
    monkeypatch.setenv("ITERABLE_API_ENDPOINT", iterable.url)
    code = cli.main(["deliver", "--actions", str(path), "--batch-size", "50"])
    out, err = capsys.readouterr()
    assert code == 1  # one dead letter
    assert "deliveries: 240" in out and "dead-lettered: 1" in out
    assert "braze-test-key" not in out + err and "@example.com" not in out + err
    [letter] = [
        json.loads(x) for x in (tmp_path / "actions.jsonl.dlq.jsonl").read_text().splitlines()
    ]
    assert letter["destination"] == "braze" and "both campaign_id" in letter["reason"]
    assert len(braze.delivered_ids()) == 120 and len(iterable.delivered_ids()) == 120


def test_moments_deliver_usage_errors(monkeypatch, capsys, tmp_path):
    for name in (
        "BRAZE_API_KEY",
        "BRAZE_API_KEY_FILE",
        "BRAZE_REST_ENDPOINT",
        "ITERABLE_API_KEY",
        "ITERABLE_API_KEY_FILE",
        "ITERABLE_API_ENDPOINT",
        "DELIVER_RATE_LIMITS",
    ):
        monkeypatch.delenv(name, raising=False)
    assert cli.main(["deliver", "--actions", "x.jsonl"]) == 2
    assert "no vendor configured" in capsys.readouterr().err
    monkeypatch.setenv("BRAZE_API_KEY", "k")
    assert cli.main(["deliver", "--actions", "x.jsonl"]) == 2
    assert "BRAZE_REST_ENDPOINT" in capsys.readouterr().err
    monkeypatch.setenv("BRAZE_REST_ENDPOINT", "https://rest.example")
    assert cli.main(["deliver", "--rate-limit", "nope=1/1s"]) == 2
    assert "bad rate limit" in capsys.readouterr().err
