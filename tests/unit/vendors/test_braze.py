import json

import pytest

from tests.unit.vendors.actions import make_action, many
from udfs.vendors import BrazeAdapter, BrazeConfig, HttpResponse, Verdict
from udfs.vendors.profile import iso8601_ms

CONFIG = BrazeConfig(endpoint="https://rest.example.braze.com/", api_key="secret-key")


def body(request):
    return json.loads(request.body)


def test_users_track_event_shape():
    action = make_action()
    [request] = BrazeAdapter(CONFIG).plan([action]).requests
    assert request.method == "POST"
    assert request.url == "https://rest.example.braze.com/users/track"
    assert request.headers["Authorization"] == "Bearer secret-key"
    assert request.headers["Content-Type"] == "application/json"
    assert body(request) == {
        "events": [
            {
                "external_id": "u-1",
                "name": "cart_nudge",
                "time": "2025-11-22T10:00:45.123Z",
                "properties": {
                    "sku": "J-1",
                    "price": 12.5,
                    "first_name": "Ada",
                    "segment": "vip",
                    "rule_id": "cart_silence",
                    "action_id": action.action_id,
                },
            }
        ]
    }


def test_iso8601_keeps_milliseconds_and_z():
    assert iso8601_ms(0) == "1970-01-01T00:00:00.000Z"
    assert iso8601_ms(1763805645007) == "2025-11-22T10:00:45.007Z"


def test_email_and_phone_only_when_chosen():
    default = body(BrazeAdapter(CONFIG).plan([make_action()]).requests[0])
    assert "email" not in default["events"][0]["properties"]
    assert "phone" not in default["events"][0]["properties"]
    chosen = BrazeConfig(endpoint="https://x", api_key="k", profile_fields=("email",))
    props = body(BrazeAdapter(chosen).plan([make_action()]).requests[0])["events"][0]["properties"]
    assert props["email"] == "u-1@example.com"
    assert "phone" not in props and "segment" not in props


def test_our_ids_win_over_trigger_properties_and_nulls_are_dropped():
    action = make_action(properties={"action_id": "spoofed", "coupon": None})
    props = body(BrazeAdapter(CONFIG).plan([action]).requests[0])["events"][0]["properties"]
    assert props["action_id"] == action.action_id
    assert "coupon" not in props


@pytest.mark.parametrize(("count", "sizes"), [(75, [75]), (76, [75, 1]), (151, [75, 75, 1])])
def test_users_track_splits_at_75(count, sizes):
    requests = BrazeAdapter(CONFIG).plan(many(count)).requests
    assert [len(body(r)["events"]) for r in requests] == sizes
    assert [len(r.items) for r in requests] == sizes


def test_campaign_trigger_shape_and_50_recipients():
    actions = many(120, campaign_id="camp-1")
    requests = BrazeAdapter(CONFIG).plan(actions).requests
    assert [r.path for r in requests] == ["/campaigns/trigger/send"] * 3
    assert [len(body(r)["recipients"]) for r in requests] == [50, 50, 20]
    first = body(requests[0])
    assert first["campaign_id"] == "camp-1"
    recipient = first["recipients"][0]
    assert set(recipient) == {"external_user_id", "trigger_properties"}
    assert recipient["trigger_properties"]["action_id"] == actions[0].action_id
    assert requests[0].endpoint == "braze.messaging"


def test_canvas_trigger_uses_canvas_entry_properties():
    [request] = BrazeAdapter(CONFIG).plan([make_action(canvas_id="cv-9")]).requests
    assert request.path == "/canvas/trigger/send"
    sent = body(request)
    assert sent["canvas_id"] == "cv-9"
    assert "canvas_entry_properties" in sent["recipients"][0]


def test_same_user_twice_goes_to_separate_trigger_requests():
    # Braze dedupes recipients with the same external_user_id within one request.
    actions = [make_action(user_id="u-1", trigger_ts=t, campaign_id="c") for t in (1, 2, 3)]
    requests = BrazeAdapter(CONFIG).plan(actions).requests
    assert len(requests) == 3
    assert all(len(body(r)["recipients"]) == 1 for r in requests)


def test_campaign_and_canvas_together_is_rejected_not_guessed():
    action = make_action(campaign_id="c", canvas_id="v")
    plan = BrazeAdapter(CONFIG).plan([action])
    assert plan.requests == []
    assert "both campaign_id and canvas_id" in plan.rejected[action.action_id]


def test_groups_by_campaign():
    actions = many(3, campaign_id="a") + [make_action(user_id="z", campaign_id="b")]
    requests = BrazeAdapter(CONFIG).plan(actions).requests
    assert sorted(body(r)["campaign_id"] for r in requests) == ["a", "b"]


def classify(status, payload=None, headers=None, actions=None, now=1000.0):
    adapter = BrazeAdapter(CONFIG, wall_clock=lambda: now)
    request = adapter.plan(actions or many(3)).requests[0]
    raw = json.dumps(payload).encode() if payload is not None else b"<html>oops</html>"
    return request, adapter.classify(request, HttpResponse(status, raw, headers or {}))


def test_201_success():
    _, outcome = classify(201, {"message": "success", "events_processed": 3})
    assert outcome.verdict is Verdict.DELIVERED and outcome.failed == {}


def test_201_with_minor_errors_fails_only_those_objects():
    request, outcome = classify(
        201,
        {
            "message": "success",
            "errors": [{"type": "'time' is not valid", "input_array": "events", "index": 1}],
        },
    )
    assert outcome.verdict is Verdict.DELIVERED
    assert outcome.failed == {request.items[1].action_id: "'time' is not valid"}


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413])
def test_4xx_is_permanent_with_the_vendors_message(status):
    _, outcome = classify(status, {"message": "Invalid API key", "errors": []})
    assert outcome.verdict is Verdict.FAILED
    assert outcome.status == status and outcome.message == "Invalid API key"


def test_429_waits_until_x_ratelimit_reset():
    _, outcome = classify(429, {"message": "rate"}, {"x-ratelimit-reset": "1007"}, now=1000.5)
    assert outcome.verdict is Verdict.RATE_LIMITED
    assert outcome.retry_after_s == pytest.approx(6.5)


def test_429_without_reset_leaves_the_wait_to_the_backoff():
    _, outcome = classify(429, {"message": "rate"})
    assert outcome.verdict is Verdict.RATE_LIMITED and outcome.retry_after_s is None


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_retried_even_with_an_html_body(status):
    _, outcome = classify(status)
    assert outcome.verdict is Verdict.RETRY
    assert "oops" in outcome.message


def test_config_repr_hides_the_key():
    assert "secret-key" not in repr(CONFIG)
