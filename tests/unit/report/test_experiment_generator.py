"""`moments generate --scenario experiment`: a stream where the rule fires once per user and the
goal follows with the true rate of the user's arm, the arm computed as the engine does."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from jobs.cli import main
from schemas.rules import load_rules, parse_rules
from udfs.campaign.assign import arm_of
from udfs.experiment_generator import (
    ExperimentSettings,
    ScenarioError,
    arms,
    example_fields,
    generate_experiment,
)

RATES = {"control": 0.10, "a": 0.30, "b": 0.10}


@pytest.fixture(scope="module")
def rule():
    return load_rules("examples/experiment.yaml")[0]


def converted_by_user(rule, events):
    """Per user: did a goal event come inside [trigger_ts, trigger_ts + within)? (One silence
    fire per user: the start, then nothing for the gap.)"""
    starts, goals = {}, {}
    for event in events:
        if event["event_type"] == "add_to_cart":
            starts[event["user_id"]] = event["ts"]
        else:
            goals.setdefault(event["user_id"], []).append(event["ts"])
    result = {}
    for user, start in starts.items():
        trigger = start + rule.pattern.gap
        assert all(ts >= trigger for ts in goals.get(user, [])), "an event broke the silence"
        window = [ts for ts in goals.get(user, []) if ts < trigger + rule.goal.within]
        result[user] = bool(window)
    return result


def test_each_arm_converts_at_its_true_rate(rule):
    events = list(generate_experiment(rule, ExperimentSettings(RATES, users=6_000, seed=3)))
    converted = converted_by_user(rule, events)
    assert len(converted) == 6_000
    per_arm, wins = Counter(), Counter()
    for user, hit in converted.items():
        per_arm[arm_of(rule, user)] += 1
        wins[arm_of(rule, user)] += hit
    assert set(per_arm) == set(RATES)
    for arm, rate in RATES.items():
        assert abs(wins[arm] / per_arm[arm] - rate) < 0.03, (arm, wins[arm], per_arm[arm])
    late = sum(1 for e in events if e["event_type"] == "purchase") - sum(wins.values())
    assert late > 0, "some goals come after the window, where they must not count"


def test_the_stream_is_deterministic_and_in_ts_order(rule):
    def run(seed):
        return list(generate_experiment(rule, ExperimentSettings(RATES, users=300, seed=seed)))

    first = run(9)
    assert first == run(9) and first != run(10)
    assert [e["ts"] for e in first] == sorted(e["ts"] for e in first)
    assert len({e["event_id"] for e in first}) == len(first)


def test_the_rates_must_name_the_rules_arms(rule):
    assert arms(rule) == ["control", "a", "b"]
    with pytest.raises(ScenarioError, match="has the arms control, a, b"):
        list(generate_experiment(rule, ExperimentSettings({"control": 0.1, "treatment": 0.2})))
    with pytest.raises(ScenarioError, match="within 0..1"):
        list(generate_experiment(rule, ExperimentSettings({**RATES, "a": 1.5})))


def test_count_and_sequence_rules_fire_on_the_generated_events():
    rules = parse_rules(
        {
            "rules": [
                {
                    "id": "quick_add",
                    "pattern": {
                        "type": "sequence",
                        "steps": [{"event_type": "product_view"}, {"event_type": "add_to_cart"}],
                        "within": "10s",
                    },
                    "goal": {"event_type": "purchase", "within": "30m"},
                    "action": {"name": "offer", "destinations": ["kafka"]},
                },
                {
                    "id": "login_trouble",
                    "pattern": {
                        "type": "count",
                        "match": {"event_type": "login_failed", "properties.attempts": {"gte": 1}},
                        "threshold": 3,
                        "within": "2s",
                    },
                    "experiment": {"holdout": "50%"},
                    "goal": {"event_type": "login_ok", "within": "5m"},
                    "action": {"name": "help", "destinations": ["kafka"]},
                },
            ]
        }
    )
    sequence, count = rules
    events = list(generate_experiment(sequence, ExperimentSettings({None: 0.5}, users=50)))
    first = [e for e in events if e["user_id"] == "u-1"]
    assert [e["event_type"] for e in first][:2] == ["product_view", "add_to_cart"]
    assert first[1]["ts"] - first[0]["ts"] < 10_000
    rates = {"control": 0.2, "treatment": 0.4}
    events = list(generate_experiment(count, ExperimentSettings(rates, users=50)))
    fails = [e for e in events if e["user_id"] == "u-1" and e["event_type"] == "login_failed"]
    assert len(fails) == 3 and fails[-1]["ts"] - fails[0]["ts"] < 2_000
    assert fails[0]["properties"] == {"attempts": 1}


def test_example_events_match_their_filters():
    spec = {"event_type": ["a", "b"], "device": "web", "properties.price": {"gt": 19, "lt": 20}}
    fields = example_fields({"event_type": ["a", "b"], "device": "web", "properties.n": {"gt": 10}})
    assert fields == {"event_type": "a", "device": "web", "properties": {"n": 11}}
    with pytest.raises(ScenarioError, match="cannot build an event"):
        example_fields(spec)  # a value strictly between 19 and 20: beyond this generator


def test_the_command_writes_the_scenario(tmp_path, capsys):
    out = tmp_path / "e.jsonl"
    argv = ["generate", "--scenario", "experiment", "--rules", "examples/experiment.yaml"]
    assert (
        main([*argv, "--users", "100", "--true-rate", "control=0.1,a=0.2,b=0.1", "--out", str(out)])
        == 0
    )
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert sum(1 for e in lines if e["event_type"] == "add_to_cart") == 100
    assert main([*argv, "--true-rate", "0.1", "--out", str(out)]) == 2
    assert "has the arms control, a, b" in capsys.readouterr().err
    assert main(["generate", "--scenario", "experiment", "--out", str(out)]) == 2
    assert "needs --rules and --true-rate" in capsys.readouterr().err
