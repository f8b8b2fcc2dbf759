"""The campaign layer in the Flink job equals the backtest: arms, control suppression and
outcomes of experiment and goal rules, in file mode (p1, p2) and Kafka mode (p2), on one
generated input with every pattern type, ties and out-of-order arrival within the bound.
Records are compared without `detected_at` (wall-clock or replay time)."""

from __future__ import annotations

import json

import pytest

from tests.integration.campaign_jobs import CampaignKafkaJob, assert_file_job_equal
from tests.integration.campaign_jobs import backtest as backtest_records
from tests.integration.detect_data import generate
from tests.integration.detect_kafka import produce

pytestmark = pytest.mark.integration
BOUND_MS = 2_000

CAMPAIGN_RULES = """\
rules:
  - id: cart_silence
    pattern: {type: silence, start: {event_type: add_to_cart},
              unless: {event_type: [checkout_started, purchase]}, gap: 5s}
    experiment: {salt: cart-x, holdout: 30%}
    goal: {event_type: purchase, within: 20s}
    action: {name: cart_nudge, destinations: [kafka, braze]}
  - id: login_trouble
    pattern: {type: count, match: {event_type: login_failed}, threshold: 3, within: 2s}
    cooldown: 3s
    experiment:
      rollout: 70%
      holdout: 20%
      variants:
        - {name: a, weight: 1, action: {name: login_help_a, destinations: [kafka]}}
        - {name: b, weight: 2, action: {name: login_help_b, destinations: [kafka, iterable]}}
    goal: {event_type: page_view, within: 10s}
    action: {name: login_help, destinations: [kafka, iterable]}
  - id: quick_add
    pattern:
      type: sequence
      steps: [{event_type: product_view}, {event_type: add_to_cart}]
      within: 1s
    goal: {event_type: [purchase, add_to_cart], within: 5s}
    action: {name: welcome_offer, destinations: [kafka]}
  - id: no_checkout
    pattern: {type: absence, start: {event_type: add_to_cart},
              missing: {event_type: checkout_started}, within: 3s}
    action: {name: exit_banner, destinations: [kafka]}
"""


def backtest(valid: list[dict]) -> dict[str, list[str]]:
    return backtest_records(CAMPAIGN_RULES, valid, BOUND_MS)[0]


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    directory = tmp_path_factory.mktemp("detect-campaign")
    lines, valid = generate(users=40, events_per_user=50, bound_ms=BOUND_MS, late=0, invalid=2)
    rules = directory / "rules.yaml"
    rules.write_text(CAMPAIGN_RULES)
    events = directory / "events.jsonl"
    events.write_text("\n".join(lines) + "\n")
    expected = backtest(valid)
    assert expected["suppressed"] and expected["outcome"]
    assert {json.loads(o)["converted"] for o in expected["outcome"]} == {True, False}
    return directory, rules, events, lines, expected


@pytest.mark.parametrize("parallelism", [1, 2])
def test_the_file_job_equals_the_backtest(generated, parallelism):
    directory, rules, events, _, expected = generated
    assert_file_job_equal(
        directory, f"p{parallelism}", rules, events, expected, "--parallelism", str(parallelism)
    )


def test_the_kafka_job_equals_the_backtest(generated, kafka_bootstrap, kafka_admin):
    directory, rules, _, lines, expected = generated
    run = CampaignKafkaJob(kafka_bootstrap, kafka_admin, "campaign", rules, directory / "kafka.log")
    try:
        produce(kafka_bootstrap, run.topics["events"], lines)
        run.start()
        run.assert_equal(expected)
    finally:
        run.close()
