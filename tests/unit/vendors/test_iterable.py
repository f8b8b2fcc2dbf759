import json

import pytest

from tests.unit.vendors.actions import make_action, many
from udfs.vendors import HttpResponse, IterableAdapter, IterableConfig, Verdict

CONFIG = IterableConfig(api_key="it-key", endpoint="https://api.iterable.com")


def body(request):
    return json.loads(request.body)


def test_single_event_goes_to_track_with_seconds_and_id():
    action = make_action(destinations=("iterable",))
    [request] = IterableAdapter(CONFIG).plan([action]).requests
    assert request.url == "https://api.iterable.com/api/events/track"
    assert request.headers["Api-Key"] == "it-key"
    assert request.headers["Content-Type"] == "application/json"
    assert body(request) == {
        "eventName": "cart_nudge",
        "userId": "u-1",
        "createdAt": 1763805645,
        "id": action.action_id,
        "dataFields": {
            "sku": "J-1",
            "price": 12.5,
            "first_name": "Ada",
            "segment": "vip",
            "rule_id": "cart_silence",
            "action_id": action.action_id,
            "trigger_ts": 1763805645123,
        },
    }


@pytest.mark.parametrize(
    ("count", "size", "sizes"), [(2, 1000, [2]), (2500, 1000, [1000, 1000, 500]), (7, 3, [3, 3, 1])]
)
def test_bulk_splits(count, size, sizes):
    config = IterableConfig(api_key="k", max_bulk_events=size)
    requests = IterableAdapter(config).plan(many(count)).requests
    lengths = [len(body(r)["events"]) if "events" in body(r) else 1 for r in requests]
    assert lengths == sizes
    assert {r.path for r in requests if len(r.items) > 1} <= {"/api/events/trackBulk"}


def test_email_identity_uses_the_profile_and_rejects_actions_without_one():
    config = IterableConfig(api_key="k", identity="email")
    with_email = make_action(user_id="a")
    without = make_action(user_id="b", profile={"segment": "x"})
    plan = IterableAdapter(config).plan([with_email, without])
    [request] = plan.requests
    assert body(request)["email"] == "a@example.com" and "userId" not in body(request)
    assert without.action_id in plan.rejected
    assert "@" not in plan.rejected[without.action_id]


def test_workflow_trigger():
    action = make_action(workflow_id="123")
    [request] = IterableAdapter(CONFIG).plan([action]).requests
    assert request.path == "/api/workflows/triggerWorkflow"
    sent = body(request)
    assert sent["workflowId"] == 123 and sent["userId"] == "u-1"
    assert sent["dataFields"]["action_id"] == action.action_id
    assert request.endpoint == "iterable.trigger_workflow"


def test_non_numeric_workflow_id_is_rejected():
    action = make_action(workflow_id="welcome")
    plan = IterableAdapter(CONFIG).plan([action])
    assert plan.requests == [] and "workflow_id" in plan.rejected[action.action_id]


def classify(status, payload=None, count=3, forgotten=()):
    adapter = IterableAdapter(CONFIG)
    request = adapter.plan(many(count)).requests[0]
    raw = json.dumps(payload).encode() if payload is not None else b""
    return request, adapter.classify(request, HttpResponse(status, raw))


def test_track_bulk_success():
    _, outcome = classify(200, {"successCount": 3, "failCount": 0, "failedUpdates": {}})
    assert outcome.verdict is Verdict.DELIVERED and outcome.failed == {}


def test_failed_updates_fail_only_those_users():
    request, outcome = classify(
        200,
        {"successCount": 2, "failCount": 1, "failedUpdates": {"forgottenUserIds": ["u-2"]}},
    )
    assert outcome.verdict is Verdict.DELIVERED
    assert outcome.failed == {request.items[2].action_id: "iterable failedUpdates.forgottenUserIds"}


@pytest.mark.parametrize(
    ("status", "code"), [(400, "BadParams"), (401, "BadApiKey"), (400, "BatchTooLarge")]
)
def test_4xx_is_permanent(status, code):
    _, outcome = classify(status, {"msg": "nope", "code": code, "params": None})
    assert outcome.verdict is Verdict.FAILED and outcome.message == f"{code}: nope"


def test_429_is_rate_limited_without_a_known_wait():
    _, outcome = classify(429, {"msg": "Exceeded rate limit", "code": "RateLimitExceeded"})
    assert outcome.verdict is Verdict.RATE_LIMITED and outcome.retry_after_s is None


def test_5xx_and_empty_body_retry():
    _, outcome = classify(503)
    assert outcome.verdict is Verdict.RETRY


def test_non_success_code_in_a_200_is_a_failure():
    _, outcome = classify(200, {"msg": "bad", "code": "InvalidEmailAddressError"})
    assert outcome.verdict is Verdict.FAILED
