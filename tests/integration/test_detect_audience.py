"""Who gets an action, in the Flink job as in the backtest: audience on the CRM profile, caps
across rules (one of them on braze only), quiet hours in the user's time zone (defer, and drop),
and an experiment with a goal, for one generated input and one CRM snapshot.

The events run across 22:00 UTC: users in UTC enter the 22:00-07:00 window, users in Tokyo leave
it (07:00 there), users in Helsinki cross local midnight inside it, users in New York never enter
it and users in Kolkata are inside throughout. Some users are missing from the snapshot, some
have no time zone or one that is not an IANA zone (both: UTC). The file job (p1, p2, `--profiles`)
and the Kafka job (the same snapshot loaded into PostgreSQL with `moments crm load`) must equal
the backtest (Replay enriched from the snapshot) on actions, deferred ones with their deliver_at,
suppressed actions with their reason, and outcomes; records compared without `detected_at`.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from datetime import UTC, datetime

import psycopg
import pytest
import yaml

from moments_testing import docs, launcher
from moments_testing.docs import ROOT, block
from tests.helpers import wait_for
from tests.integration.campaign_jobs import CampaignKafkaJob, assert_file_job_equal
from tests.integration.campaign_jobs import backtest as backtest_records
from tests.integration.detect_data import T0, generate
from tests.integration.detect_kafka import produce
from udfs.crm.file import load_profiles
from udfs.enrich import enrich

pytestmark = pytest.mark.integration
BOUND_MS = 2_000
EXAMPLE_RULES = ROOT / "examples" / "audience.yaml"
# 40 s before 22:00 UTC: the generated streams (about a minute per user) cross it.
BASE_MS = int(datetime(2025, 11, 22, 21, 59, 20, tzinfo=UTC).timestamp() * 1000)
ZONES = [None, "UTC", "Asia/Tokyo", "Europe/Helsinki", "America/New_York", "Asia/Kolkata"]
ZONES += ["Mars/Olympus_Mons", "", "Europe/Helsinki", "Asia/Tokyo"]

RULES = """\
limits:
  caps:
    - {max: 2, per: 10s}
    - {max: 1, per: 30s, destinations: [braze]}
  quiet_hours: {start: "22:00", end: "07:00", timezone: profile.timezone,
                default_timezone: UTC, mode: MODE}
rules:
  - id: cart_silence
    pattern: {type: silence, start: {event_type: add_to_cart},
              unless: {event_type: [checkout_started, purchase]}, gap: 5s}
    audience: {profile.segment: vip, profile.consent_push: true}
    action: {name: cart_nudge, destinations: [kafka, braze]}
  - id: login_trouble
    pattern: {type: count, match: {event_type: login_failed}, threshold: 3, within: 2s}
    cooldown: 3s
    audience: {profile.consent_push: true}
    action: {name: login_help, destinations: [kafka, iterable]}
  - id: quick_add
    pattern:
      type: sequence
      steps: [{event_type: product_view}, {event_type: add_to_cart}]
      within: 1s
    experiment: {salt: quick-x, holdout: 30%}
    goal: {event_type: purchase, within: 20s}
    action: {name: welcome_offer, destinations: [kafka, braze]}
  - id: no_checkout
    pattern: {type: absence, start: {event_type: add_to_cart},
              missing: {event_type: checkout_started}, within: 3s}
    action: {name: exit_banner, destinations: [kafka]}
"""


def rules_yaml(mode: str) -> str:
    return RULES.replace("MODE", mode)


def profiles_for(users: list[str]) -> list[dict]:
    """Every fifth user is missing; the others cycle through zones, segments and consent."""
    profiles = []
    for n, user in enumerate(sorted(users)):
        if n % 5 == 4:
            continue
        profile = {"user_id": user, "segment": ("vip", "regular", "vip", "loyal")[n % 4]}
        profile["consent_push"] = n % 3 != 2
        zone = ZONES[n % len(ZONES)]
        if zone is not None:
            profile["timezone"] = zone
        profiles.append(profile)
    return profiles


def backtest(rules: str, events: list[dict], profiles_path) -> tuple[dict, object]:
    """The sorted records of each kind, and the replay's counts."""
    profiles = load_profiles(profiles_path)
    return backtest_records(
        rules, events, BOUND_MS, lambda action: enrich(action, profiles.lookup(action.user_id))
    )


def fates_of(records: dict[str, list[str]]) -> dict[str, int]:
    fates: dict[str, int] = {}
    for text in records["action"]:
        fate = "sent" if json.loads(text).get("deliver_at") is None else "deferred"
        fates[fate] = fates.get(fate, 0) + 1
    for text in records["suppressed"]:
        fate = json.loads(text)["suppressed"]
        fates[fate] = fates.get(fate, 0) + 1
    return fates


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    directory = tmp_path_factory.mktemp("detect-audience")
    _, generated = generate(users=30, events_per_user=40, bound_ms=BOUND_MS, late=0, invalid=0)
    events = [{**e, "ts": e["ts"] - T0 + BASE_MS} for e in generated]
    (directory / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    profiles = profiles_for(sorted({e["user_id"] for e in events}))
    (directory / "profiles.jsonl").write_text("".join(json.dumps(p) + "\n" for p in profiles))
    expected = {}
    for mode in ("defer", "drop"):
        (directory / f"rules-{mode}.yaml").write_text(rules_yaml(mode))
        records, counts = backtest(rules_yaml(mode), events, directory / "profiles.jsonl")
        detected = sum(counts.actions_per_rule.values())
        # Counts add up: every detection has one fate, and one record says which.
        assert sum(counts.fates.values()) == detected
        assert len(records["action"]) + len(records["suppressed"]) == detected
        assert fates_of(records) == dict(counts.fates)
        expected[mode] = records
    defer, drop = fates_of(expected["defer"]), fates_of(expected["drop"])
    for fate in ("sent", "deferred", "audience", "no_profile", "cap", "control"):
        assert defer.get(fate, 0) > 0, (fate, defer)
    assert "deferred" not in drop and drop.get("quiet_hours", 0) > 0, drop
    deferred = [json.loads(a) for a in expected["defer"]["action"]]
    zones_deferred = {a["profile"].get("timezone") for a in deferred if a.get("deliver_at")}
    assert {"Asia/Tokyo", "Europe/Helsinki", "Asia/Kolkata"} <= zones_deferred, zones_deferred
    return directory, events, expected


@pytest.mark.parametrize(("mode", "parallelism"), [("defer", 1), ("defer", 2), ("drop", 2)])
def test_the_file_job_equals_the_backtest(inputs, mode, parallelism):
    directory, _, expected = inputs
    assert_file_job_equal(
        directory, f"{mode}-p{parallelism}", directory / f"rules-{mode}.yaml",
        directory / "events.jsonl", expected[mode],
        "--profiles", str(directory / "profiles.jsonl"), "--parallelism", str(parallelism),
    )  # fmt: skip


@pytest.fixture
def crm_table(crm_dsn, inputs, monkeypatch):
    """The snapshot loaded with `moments crm load` into a table of its own; the job's CRM."""
    directory, _, _ = inputs
    table = f"crm_audience_{uuid.uuid4().hex[:10]}"
    loaded = launcher.run_moments(
        "crm", "load", "--profiles", str(directory / "profiles.jsonl"), "--table", table,
        env={**_without_crm_settings(), "CRM_DSN": crm_dsn},
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr
    for name in _crm_variables():
        monkeypatch.delenv(name, raising=False)
    # RunningJob starts the job with this process's environment.
    monkeypatch.setenv("CRM_DSN", crm_dsn)
    monkeypatch.setenv("CRM_TABLE", table)
    # A lookup slower than its budget on a loaded machine would make `no_profile`.
    monkeypatch.setenv("CRM_TIMEOUT_MS", "10000")
    yield table
    with psycopg.connect(crm_dsn) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")


def _crm_variables() -> list[str]:
    return [name for name in os.environ if name.startswith("CRM_")]


def _without_crm_settings() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}


def test_the_kafka_job_with_postgres_equals_the_backtest(
    inputs, crm_table, kafka_bootstrap, kafka_admin
):
    directory, events, expected = inputs
    expected = expected["defer"]
    run = CampaignKafkaJob(
        kafka_bootstrap, kafka_admin, "aud", directory / "rules-defer.yaml",
        directory / "kafka-job.log",
    )  # fmt: skip
    try:
        produce(kafka_bootstrap, run.topics["events"], [json.dumps(e) for e in events])
        job = run.start()
        run.assert_equal(expected)
        # Counts add up in the job's metrics too: detections = the fates counted.
        fates = {f"detect.campaign.fate_{fate}": n for fate, n in fates_of(expected).items()}
        detected = sum(fates.values())

        def counted():
            metrics = job.metrics_matching(("detect.campaign.fate_", "detect.rule."))
            rules = sum(v for k, v in metrics.items() if k.endswith(".actions"))
            got = {k: v for k, v in metrics.items() if k.startswith("detect.campaign.fate_")}
            return (rules, got) == (detected, fates) and metrics

        wait_for(counted, timeout=60, interval=1, message="campaign.fate_* metrics")
    finally:
        run.close()


def test_the_readme_example_prints_the_counts_it_quotes(tmp_path):
    """README "Who gets an action": its YAML is examples/audience.yaml, and its backtest with the
    example snapshot prints the fates the README quotes, sums included."""
    shown = block("README.md", "who-gets-an-action")
    found = docs.blocks("README.md")
    [example] = [b for b in found if b.lang == "yaml" and "vip_cart_nudge" in b.text]
    assert yaml.safe_load(example.text) == yaml.safe_load(EXAMPLE_RULES.read_text())
    [quoted] = [b for b in found if b.line > shown.line and b.lang == "text"][:1]
    script = "\n".join(shown.commands()).replace("/tmp/", f"{tmp_path}/")
    result = subprocess.run(
        ["bash", "-e", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert quoted.text.strip() in result.stdout, result.stdout[-2000:]
    records = {
        "action": (tmp_path / "who-actions.jsonl").read_text().splitlines(),
        "suppressed": (tmp_path / "who-suppressed.jsonl").read_text().splitlines(),
    }
    printed = {}
    for line in quoted.text.splitlines():
        name, _, count = line.strip().rpartition(" ")
        printed[name.strip()] = int(count.replace(",", ""))
    fates = fates_of(records)
    assert fates == {fate: printed[fate] for fate in fates}
    assert sum(fates.values()) == printed["actions"]
