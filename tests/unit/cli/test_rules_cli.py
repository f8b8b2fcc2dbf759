"""`moments rules publish|list` up to the broker (validation, flags), and `moments backtest
--rules-history`; publishing to a real broker is tests/integration/test_rules_topic.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from jobs import settings
from jobs.cli import main
from jobs.rules_cli import effective_from_ms, read_record

ROOT = Path(__file__).resolve().parents[3]


def test_publish_rejects_an_invalid_file_with_validates_errors(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - id: x\n    pattern: {type: count}\n    action: {name: a}\n")
    assert main(["validate", str(bad)]) == 2
    validate_errors = capsys.readouterr().err.splitlines()[:-1]
    # Nothing is sent: the broker address is never tried.
    code = main(["rules", "publish", str(bad), "--version", "v1", "--bootstrap-servers", "x:1"])
    assert code == 2
    err = capsys.readouterr().err.splitlines()
    assert err[:-1] == validate_errors
    assert err[-1].endswith("problem(s); nothing published")


def test_publish_rejects_a_bad_version(capsys):
    rules = str(ROOT / "examples" / "rules.yaml")
    assert main(["rules", "publish", rules, "--version", "not ok"]) == 2
    assert "rule -: version: 'not ok' is not a valid version" in capsys.readouterr().err


def test_the_record_is_the_rules_file_as_json():
    value = read_record(str(ROOT / "examples" / "rules.yaml"), "v7", 1000)
    document = yaml.safe_load((ROOT / "examples" / "rules.yaml").read_text())
    assert value == {"version": "v7", "effective_from": 1000, "rules": document}
    json.dumps(value)


def test_effective_from_is_epoch_ms_or_rfc3339_with_an_offset():
    assert effective_from_ms(None) is None
    assert effective_from_ms("1763805600000") == 1763805600000
    assert effective_from_ms("2025-11-22T10:00:00Z") == 1763805600000
    assert effective_from_ms("2025-11-22T11:00:00+01:00") == 1763805600000
    for bad in ("2025-11-22T10:00:00", "soon"):
        with pytest.raises(Exception, match="--effective-from"):
            effective_from_ms(bad)


@pytest.mark.parametrize(
    "argv",
    [["rules", "publish"], ["rules", "publish", "f.yaml"], ["rules", "list", "f.yaml"]],
)
def test_usage_errors(argv, capsys):
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith("moments rules: ")


def test_the_rules_topic_is_compacted_everywhere_it_is_created():
    assert settings.TOPIC_CONFIGS[settings.RULES_TOPIC] == {"cleanup.policy": "compact"}
    assert {settings.RULES_TOPIC, settings.RULES_STATUS_TOPIC} <= set(settings.ALL_TOPICS)
    compose = (ROOT / "docker-compose.yml").read_text()
    assert f"--entity-name {settings.RULES_TOPIC} --add-config cleanup.policy=compact" in compose


def _events(path: Path) -> None:
    rows = [
        ("e1", 1_000, "product_view"),
        ("e2", 2_000, "add_to_cart"),  # quick_add under v1
        ("e3", 100_000, "product_view"),
        ("e4", 101_000, "add_to_cart"),  # quick_add removed by v2 at 50 s
    ]
    path.write_text(
        "".join(
            json.dumps({"event_id": i, "user_id": "u1", "event_type": t, "ts": ts}) + "\n"
            for i, ts, t in rows
        )
    )


def test_backtest_replays_a_rules_history(tmp_path):
    rules = yaml.safe_load((ROOT / "examples" / "rules.yaml").read_text())
    quick_add = [r for r in rules["rules"] if r["id"] == "quick_add"]
    others = [r for r in rules["rules"] if r["id"] not in ("quick_add", "no_checkout")]
    history = tmp_path / "h.jsonl"
    history.write_text(
        json.dumps({"version": "v1", "effective_from": None, "rules": {"rules": quick_add}})
        + "\n"
        + json.dumps({"version": "v2", "effective_from": 50_000, "rules": {"rules": others}})
        + "\n"
    )
    events, out = tmp_path / "e.jsonl", tmp_path / "a.jsonl"
    _events(events)
    argv = ["backtest", "--rules-history", str(history), "--events", str(events)]
    assert main([*argv, "--out", str(out), "--max-future", "off"]) == 0
    actions = [json.loads(line) for line in out.read_text().splitlines()]
    found = [(a["rule_id"], a["trigger_ts"], a["rules_version"]) for a in actions]
    assert sorted(found) == [("cart_silence", 146_000, "v2"), ("quick_add", 2_000, "v1")]


def test_backtest_rejects_a_bad_history(tmp_path, capsys):
    history = tmp_path / "h.jsonl"
    history.write_text(json.dumps({"version": "v1", "effective_from": None, "rules": {}}) + "\n")
    events = tmp_path / "e.jsonl"
    _events(events)
    argv = ["backtest", "--rules-history", str(history), "--events", str(events)]
    assert main([*argv, "--out", str(tmp_path / "a.jsonl")]) == 2
    assert "rule -: rules: the file must hold `rules: [...]` (line 1)" in capsys.readouterr().err


def test_backtest_takes_rules_or_a_history_not_both(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["backtest", "--rules", "r", "--rules-history", "h", "--events", "e", "--out", "o"])
