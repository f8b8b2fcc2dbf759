"""File mode of `moments run` on a MiniCluster gives exactly the backtest's actions and late events.

One generated input exercises every pattern type, cooldown, ties, +-1 ms boundaries, out-of-order
arrival within the bound, late and invalid records; the job runs once per parallelism and all
assertions share that run. Actions are compared without `detected_at` (file mode reports the event
time of detection, the backtest its replay watermark).
"""

from __future__ import annotations

import json
import subprocess

import pytest

from moments_testing import launcher
from schemas.event import Event
from schemas.rules import parse_rules
from tests.integration.detect_data import RULES_YAML, generate, write_inputs
from udfs.engine import Engine
from udfs.replay import Replay

pytestmark = pytest.mark.integration
BOUND_MS = 2_000


def run_moments(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return launcher.run_moments("run", *args, timeout=timeout)


def without_detected_at(line: str) -> str:
    action = json.loads(line)
    action.pop("detected_at")
    return json.dumps(action, sort_keys=True)


def backtest(
    valid: list[dict], rules_yaml: str = RULES_YAML, bound_ms: int = BOUND_MS
) -> tuple[list[str], list[str]]:
    yaml = __import__("yaml")
    engine = Engine(parse_rules(yaml.safe_load(rules_yaml)))
    actions, late = [], []
    runner = Replay(
        engine,
        bound_ms,
        on_action=lambda a: actions.append(
            without_detected_at(a.model_dump_json(exclude_none=True))
        ),
        on_late=lambda e: late.append(e.event_id),
    )
    for record in valid:
        runner.push(Event.model_validate(record))
    runner.finish()
    return actions, late


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    directory = tmp_path_factory.mktemp("detect-file")
    lines, valid = generate(bound_ms=BOUND_MS)
    rules, events = write_inputs(directory, lines)
    return directory, rules, events, lines, valid


@pytest.fixture(scope="module", params=[1, 2], ids=["p1", "p2"])
def job_run(request, generated):
    directory, rules, events, lines, valid = generated
    out = directory / f"actions-p{request.param}.jsonl"
    late = directory / f"late-p{request.param}.jsonl"
    dlq = directory / f"dlq-p{request.param}.jsonl"
    result = run_moments(
        "--rules",
        str(rules),
        "--events",
        str(events),
        "--out",
        str(out),
        "--late-out",
        str(late),
        "--dlq-out",
        str(dlq),
        "--max-out-of-orderness",
        f"{BOUND_MS}ms",
        "--parallelism",
        str(request.param),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return {
        "actions": out.read_text().splitlines(),
        "late": late.read_text().splitlines(),
        "dlq": dlq.read_text().splitlines(),
        "stderr": result.stderr,
    }


def test_actions_equal_backtest(job_run, generated):
    expected, _ = backtest(generated[4])
    got = [without_detected_at(line) for line in job_run["actions"]]
    assert len(got) == len(set(got)), "an action was emitted twice"
    assert sorted(got) == sorted(expected)
    rules_fired = {json.loads(a)["rule_id"] for a in got}
    assert rules_fired == {
        "cart_silence",
        "login_trouble",
        "quick_add",
        "no_checkout",
        "big_spender",
    }


def test_boundary_cases(job_run):
    fired = {(a["user_id"], a["rule_id"]) for a in map(json.loads, job_run["actions"])}
    for user, rule, fires in [
        ("edge-s1", "cart_silence", True),
        ("edge-a1", "no_checkout", False),
        ("edge-a2", "no_checkout", True),
        ("edge-q1", "quick_add", True),
        ("edge-q2", "quick_add", False),
        ("edge-c1", "login_trouble", True),
        ("edge-c2", "login_trouble", False),
        ("edge-tie", "quick_add", True),
        ("edge-tie2", "quick_add", False),
    ]:
        assert ((user, rule) in fired) is fires, (user, rule)
    cooled = [
        a
        for a in map(json.loads, job_run["actions"])
        if a["user_id"] == "edge-cool" and a["rule_id"] == "login_trouble"
    ]
    assert len(cooled) == 2  # the triple inside the 3s cooldown is used up silently


def test_late_and_dead_letters_add_up(job_run, generated):
    lines, valid = generated[3], generated[4]
    _, expected_late = backtest(valid)
    assert sorted(json.loads(line)["event_id"] for line in job_run["late"]) == sorted(expected_late)
    assert len(expected_late) == 5
    assert len(job_run["dlq"]) == len(lines) - len(valid) == 5
    for record in map(json.loads, job_run["dlq"]):
        assert record["reason"] and record["raw"] == lines[record["offset"] - 1]
    processed = len(valid) - len(expected_late)
    assert (
        f"{len(lines)} events in, {processed} processed, 5 late, 5 dead-lettered"
        in job_run["stderr"]
    )
