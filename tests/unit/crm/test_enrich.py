from __future__ import annotations

from schemas.action import Action, action_id
from udfs.crm import LookupResult
from udfs.enrich import enrich


def an_action() -> Action:
    return Action(
        action_id=action_id("cart_silence", "u-1", 1000),
        rule_id="cart_silence",
        action="cart_nudge",
        user_id="u-1",
        trigger_ts=1000,
        detected_at=1010,
        event_ids=["e-1"],
        destinations=["kafka", "braze"],
        enrichment="skipped",
        properties={"sku": "J-1"},
    )


PROFILE = {"email": "user1@example.com", "segment": "vip", "country": "US"}


def test_ok_sets_the_profile_and_leaves_the_rest_alone():
    action = an_action()

    enriched = enrich(action, LookupResult("ok", PROFILE, latency_ms=2.0))

    assert enriched.enrichment == "ok"
    assert enriched.profile == PROFILE
    assert enriched.model_dump(exclude={"profile", "enrichment"}) == action.model_dump(
        exclude={"profile", "enrichment"}
    )


def test_the_input_action_and_the_cached_profile_are_not_changed():
    action, profile = an_action(), dict(PROFILE)

    enriched = enrich(action, LookupResult("ok", profile))
    enriched.profile["email"] = "changed"

    assert action.profile == {} and action.enrichment == "skipped"
    assert profile == PROFILE


def test_missing_and_unavailable_carry_no_profile():
    for status in ("missing", "unavailable"):
        enriched = enrich(an_action(), LookupResult(status, {"stale": 1}))
        assert (enriched.enrichment, enriched.profile) == (status, {})


def test_no_crm_means_skipped():
    enriched = enrich(an_action(), None)
    assert (enriched.enrichment, enriched.profile) == ("skipped", {})


def test_fields_keep_only_what_is_asked_for():
    enriched = enrich(an_action(), LookupResult("ok", PROFILE), fields={"segment", "first_name"})
    assert enriched.profile == {"segment": "vip"}


def test_the_enriched_action_serialises_per_the_contract():
    enriched = enrich(an_action(), LookupResult("ok", PROFILE))
    assert b'"enrichment":"ok"' in enriched.to_json_bytes()
    assert Action.model_validate_json(enriched.to_json_bytes()) == enriched
