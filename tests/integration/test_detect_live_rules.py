"""Live rules in the Kafka job (issue 17): v1 published before the events, v2 (kept, changed,
removed and added rules; an explicit effective_from in the middle of the events) published while
the job runs, an invalid v3 rejected on the status topic. The actions equal those of `moments
backtest --rules-history` over the same records: 0 missing, 0 extra, compared without
`detected_at`; every action carries its rules_version. The rules input never holds event time
back (deadlines such as silence and absence fire while it is idle) and never carries it on: a
rules record read while the events source is idle leaves the events after the pause on time.
Run twice: without a scope (JVM filters off) and with `--rules-scope` naming v1's and v2's rules
(filters on, built from the scope; a version beyond it rejected)."""

from __future__ import annotations

import json
import time

import pytest
import yaml

from moments_testing import launcher
from tests.helpers import wait_for
from tests.integration.detect_data import RULES_YAML, generate
from tests.integration.detect_kafka import (
    RunningJob,
    TopicReader,
    create_topics,
    produce,
    tear_down,
)

pytestmark = pytest.mark.integration
BOUND_MS = 2_000
# The events source goes idle this long after its last record; the test pauses past it.
IDLE_TIMEOUT_MS = 1_000

# v2 against detect_data's v1: quick_add kept; login_trouble kept with another action;
# cart_silence changed (gap); no_checkout and big_spender removed; page_burst added (it reads
# page_view, which v1 reads as activity only).
V2_RULES = """\
rules:
  - id: quick_add
    pattern:
      type: sequence
      steps: [{event_type: product_view}, {event_type: add_to_cart}]
      within: 1s
    action: {name: welcome_offer, destinations: [kafka]}
  - id: login_trouble
    pattern: {type: count, match: {event_type: login_failed}, threshold: 3, within: 2s}
    cooldown: 3s
    action: {name: login_help_v2, destinations: [kafka]}
  - id: cart_silence
    pattern:
      type: silence
      start: {event_type: add_to_cart}
      unless: {event_type: [checkout_started, purchase]}
      gap: 3s
    action: {name: cart_nudge, destinations: [kafka, braze]}
  - id: page_burst
    pattern: {type: count, match: {event_type: page_view}, threshold: 2, within: 1s}
    action: {name: page_help, destinations: [kafka]}
"""


def _record(value: bytes | str) -> str:
    record = json.loads(value)
    record.pop("detected_at", None)
    return json.dumps(record, sort_keys=True)


def _record_value(version: str, effective_from: int | None, rules_yaml: str) -> str:
    rules = yaml.safe_load(rules_yaml)
    return json.dumps({"version": version, "effective_from": effective_from, "rules": rules})


def split_at_switch(lines: list[str]) -> tuple[int, tuple[list[str], list[str]]]:
    """T (the median ts) and the events in two phases: the arrivals before the first event at
    or after T (none of them reaches T), then the rest and one event far past every deadline."""
    stamps = sorted(json.loads(line)["ts"] for line in lines)
    switch_at = stamps[len(stamps) // 2]
    cut = next(i for i, line in enumerate(lines) if json.loads(line)["ts"] >= switch_at)
    end = {"event_id": "end", "user_id": "zz-end", "event_type": "other"}
    end["ts"] = stamps[-1] + 600_000
    return switch_at, (lines[:cut], [*lines[cut:], json.dumps(end)])


@pytest.fixture(scope="module")
def live_inputs(tmp_path_factory):
    directory = tmp_path_factory.mktemp("detect-live-rules")
    lines, _ = generate(users=12, events_per_user=40, bound_ms=BOUND_MS, late=0, invalid=0)
    switch_at, phases = split_at_switch(lines)
    history = directory / "history.jsonl"
    v1, v2 = _record_value("v1", None, RULES_YAML), _record_value("v2", switch_at, V2_RULES)
    history.write_text(f"{v1}\n{v2}\n")
    events = directory / "events.jsonl"
    events.write_text("\n".join([*phases[0], *phases[1]]) + "\n")
    out = directory / "expected.jsonl"
    result = launcher.run_moments(
        "backtest", "--rules-history", str(history), "--events", str(events), "--out", str(out),
        "--max-out-of-orderness", "2s", timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    expected = {_record(line) for line in out.read_text().splitlines() if line.strip()}
    versions = {json.loads(a)["rules_version"]: json.loads(a)["rule_id"] for a in expected}
    assert set(versions) == {"v1", "v2"}, versions
    assert {json.loads(a)["rule_id"] for a in expected} >= {"page_burst", "no_checkout"}
    return directory, (v1, v2), switch_at, phases, expected


def _scope_file(directory) -> str:
    """v1's and v2's rules side by side (ids made distinct): the scope both versions fit."""
    rules = []
    for suffix, text in (("v1", RULES_YAML), ("v2", V2_RULES)):
        rules += [
            {**rule, "id": f"{rule['id']}_{suffix}"} for rule in yaml.safe_load(text)["rules"]
        ]
    scope = directory / "scope.yaml"
    scope.write_text(yaml.safe_dump({"rules": rules}))
    return str(scope)


def _statuses(reader: TopicReader) -> dict[str, dict]:
    reader.poll()
    return {status["version"]: status for status in reader.values()}


def _publish_raw(bootstrap: str, topic: str, value: str) -> None:
    """A record as `moments rules publish` writes it, without its validation."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    producer.send(topic, key=b"rules", value=value.encode()).get(timeout=30)
    producer.close()


@pytest.mark.parametrize("scoped", [False, True], ids=["no-scope", "scope"])
def test_versions_published_to_a_running_job_equal_the_backtest_of_the_history(
    live_inputs, kafka_bootstrap, kafka_admin, scoped
):
    directory, (v1, v2), switch_at, phases, expected = live_inputs
    scope = ["--rules-scope", _scope_file(directory)] if scoped else []
    topics = create_topics(
        kafka_admin, "live-rules",
        {"events": 1, "actions": 1, "dlq": 1, "late": 1, "suppressed": 1, "outcomes": 1,
         "rules": 1, "status": 1},
        configs={"rules": {"cleanup.policy": "compact"}},
    )  # fmt: skip
    v1_file = directory / "v1.yaml"
    v1_file.write_text(RULES_YAML)
    published = launcher.run_moments(
        "rules", "publish", str(v1_file), "--version", "v1",
        "--bootstrap-servers", kafka_bootstrap, "--topic", topics["rules"], timeout=60,
    )  # fmt: skip
    assert published.returncode == 0, published.stderr
    produce(kafka_bootstrap, topics["events"], phases[0])
    readers = {role: TopicReader(kafka_bootstrap, topics[role]) for role in ("actions", "status")}
    job = RunningJob(
        [
            "--rules-topic", topics["rules"], "--rules-status-topic", topics["status"],
            "--bootstrap-servers", kafka_bootstrap,
            "--events-topic", topics["events"], "--actions-topic", topics["actions"],
            "--dlq-topic", topics["dlq"], "--late-topic", topics["late"],
            "--suppressed-topic", topics["suppressed"], "--outcomes-topic", topics["outcomes"],
            "--group-id", f"live-{topics['events']}", "--starting-offsets", "earliest",
            "--max-out-of-orderness", "2s", "--idle-fire-after", "off",
            "--checkpoint-interval", "2s", "--source-idle-timeout", f"{IDLE_TIMEOUT_MS}ms",
            *scope,
        ],
        directory / f"kafka-job-{scoped}.log",
    )  # fmt: skip
    try:

        def status_of(version: str):
            assert job.alive(), job.log_tail()
            return _statuses(readers["status"]).get(version)

        _publish_raw(kafka_bootstrap, topics["rules"], v2)
        applied = wait_for(lambda: status_of("v2"), timeout=180, interval=0.5, message="v2")
        assert applied["status"] == "applied" and applied["applied_from"] == switch_at, applied
        assert status_of("v1")["status"] == "applied"
        # Phase 1 fires while the rules input is idle: deadlines are not held back by it.
        wait_for(
            lambda: {json.loads(r.value)["rule_id"] for r in readers["actions"].poll()}
            >= {"cart_silence", "no_checkout"},
            timeout=60, interval=0.5, message="deadline actions of phase 1",
        )  # fmt: skip
        # The events source goes idle; a rules record read meanwhile must not carry event time
        # on (before the fix, the rules input's watermark became the operator's and phase 2
        # was late). The pause is the scenario, not a wait for a condition.
        time.sleep(IDLE_TIMEOUT_MS * 4 / 1000)
        invalid = json.loads(v2) | {"version": "v3", "effective_from": switch_at + 1}
        invalid["rules"]["rules"][0]["pattern"]["within"] = "soon"
        _publish_raw(kafka_bootstrap, topics["rules"], json.dumps(invalid))
        rejected = wait_for(lambda: status_of("v3"), timeout=60, interval=0.5, message="v3")
        assert rejected["status"] == "rejected", rejected
        assert rejected["problems"][0]["rule"] == "quick_add", rejected
        assert rejected["problems"][0]["field"] and rejected["problems"][0]["reason"]
        # ... and logged, in the job's own log.
        wait_for(
            lambda: "rules version v3 rejected" in job.log_tail(), timeout=30, interval=0.5,
            message="the rejection in the job's log",
        )  # fmt: skip
        if scoped:  # a valid version that reads a type the scope's filters drop
            beyond = json.loads(v2) | {"version": "v4", "effective_from": switch_at + 2}
            beyond["rules"]["rules"][0]["pattern"]["steps"][0] = {"event_type": "wishlist"}
            _publish_raw(kafka_bootstrap, topics["rules"], json.dumps(beyond))
            refused = wait_for(lambda: status_of("v4"), timeout=60, interval=0.5, message="v4")
            assert refused["status"] == "rejected", refused
            assert "--rules-scope" in refused["problems"][0]["reason"], refused
        produce(kafka_bootstrap, topics["events"], phases[1])
        try:
            wait_for(
                lambda: len(readers["actions"].poll()) >= len(expected),
                timeout=120, interval=0.5, message="every action",
            )  # fmt: skip
        except AssertionError:
            pass  # the comparison below says what is missing or extra
        got = {_record(r.value) for r in readers["actions"].poll()}
        missing, extra = expected - got, got - expected
        assert not missing and not extra, (len(missing), len(extra), sorted(missing)[:3])
        assert all(json.loads(a)["rules_version"] in ("v1", "v2") for a in got)
        assert job.alive(), job.log_tail()
        # The JVM activity filter runs with the scope, not without one.
        assert ("activity" in job.vertex_names()) == scoped, job.vertex_names()
        # `moments rules list` shows what the running job reported for each version.
        listed = launcher.run_moments(
            "rules", "list", "--bootstrap-servers", kafka_bootstrap,
            "--topic", topics["rules"], "--status-topic", topics["status"], timeout=60,
        )  # fmt: skip
        assert listed.returncode == 0, listed.stderr
        lines = {line.split()[1]: line for line in listed.stdout.splitlines()[1:4]}
        assert "applied from" in lines["v1"] and "applied from" in lines["v2"], listed.stdout
        assert str(switch_at) in lines["v2"], listed.stdout
        assert "invalid" in lines["v3"] and "rejected: quick_add" in lines["v3"], listed.stdout
        assert "the job applies v2" in listed.stdout, listed.stdout
    finally:
        tear_down(job, readers, kafka_admin, topics)
