import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.cli import main
from schemas.action import action_id

RULES = """
rules:
  - id: quick_add
    pattern:
      type: sequence
      steps: [{event_type: product_view}, {event_type: add_to_cart}]
      within: 10s
    action: {name: welcome_offer, destinations: [kafka]}
  - id: no_checkout
    pattern:
      type: absence
      start: {event_type: add_to_cart}
      missing: {event_type: checkout_started}
      within: 45s
    action: {name: exit_banner, destinations: [kafka, braze], campaign_id: camp-1}
"""

LINES = [
    '{"event_id":"v","user_id":"u1","event_type":"product_view","ts":1000}',
    "{broken",
    '{"event_id":"a","user_id":"u1","event_type":"add_to_cart",'
    '"ts":"1970-01-01T00:00:05.000Z","properties":{"sku":"J-1"}}',
    "",
    '{"event_id":"n","user_id":"u2","event_type":"page_view","ts":90000}',
    '{"event_id":"old","user_id":"u2","event_type":"add_to_cart","ts":1000}',
    '{"user_id":"u3","event_type":"page_view","ts":1}',
]


@pytest.fixture
def files(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(LINES) + "\n")
    return tmp_path, rules, events


def _read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_backtest_writes_actions_dlq_late_and_a_summary(files, capsys):
    tmp, rules, events = files
    out, late = tmp / "actions.jsonl", tmp / "late.jsonl"
    code = main(
        [
            "backtest",
            "--rules",
            str(rules),
            "--events",
            str(events),
            "--out",
            str(out),
            "--late-out",
            str(late),
        ]
    )
    assert code == 0
    actions = _read(out)
    assert [(a["rule_id"], a["trigger_ts"], a["event_ids"]) for a in actions] == [
        ("quick_add", 5000, ["v", "a"]),
        ("no_checkout", 50000, ["a"]),
    ]
    absence = actions[1]
    assert absence["action_id"] == action_id("no_checkout", "u1", 50000)
    assert absence["destinations"] == ["kafka", "braze"]
    assert absence["campaign_id"] == "camp-1"
    assert absence["properties"] == {"sku": "J-1"}
    assert absence["enrichment"] == "skipped"
    assert absence["detected_at"] == 88000  # the replay's event time: 90000 - 2s bound
    dlq = _read(tmp / "actions.dlq.jsonl")
    assert [(d["offset"], d["raw"]) for d in dlq] == [(2, "{broken"), (7, LINES[6])]
    assert "event_id: required field is missing" in dlq[1]["reason"]
    assert [json.loads(line)["event_id"] for line in late.read_text().splitlines()] == ["old"]
    summary = capsys.readouterr().out
    for label, value in [
        ("events read", 6),
        ("processed", 3),
        ("invalid (dead-lettered)", 2),
        ("late", 1),
        ("quick_add", 1),
        ("no_checkout", 1),
    ]:
        assert any(
            line.split()[-1] == str(value) and label in line for line in summary.splitlines()
        ), label


def test_bound_changes_lateness(files):
    tmp, rules, events = files
    out = tmp / "a.jsonl"
    assert (
        main(
            [
                "backtest",
                "--rules",
                str(rules),
                "--events",
                str(events),
                "--out",
                str(out),
                "--max-out-of-orderness",
                "90s",
            ]
        )
        == 0
    )
    # With a 90 s bound the old add_to_cart of u2 is on time and arms its own deadline.
    assert ("no_checkout", "u2", 46000) in [
        (a["rule_id"], a["user_id"], a["trigger_ts"]) for a in _read(out)
    ]


def test_parquet_input_gives_the_same_actions(files):
    tmp, rules, events = files
    rows = [json.loads(line) for line in LINES if line.strip() and line != "{broken"]
    rows = [r for r in rows if "event_id" in r]
    for r in rows:
        r["properties"] = json.dumps(r.get("properties", {}))
        r["ts"] = r["ts"] if isinstance(r["ts"], int) else 5000
    table = pa.Table.from_pylist(rows)
    parquet = tmp / "events.parquet"
    pq.write_table(table, parquet, row_group_size=2)
    out_jsonl, out_parquet = tmp / "j.jsonl", tmp / "p.jsonl"
    main(["backtest", "--rules", str(rules), "--events", str(events), "--out", str(out_jsonl)])
    main(["backtest", "--rules", str(rules), "--events", str(parquet), "--out", str(out_parquet)])

    def strip(actions):
        return [{k: v for k, v in a.items() if k != "detected_at"} for a in actions]

    assert strip(_read(out_parquet)) == strip(_read(out_jsonl))


def test_parquet_timestamp_column_is_epoch_ms(files):
    tmp, rules, _ = files
    table = pa.table(
        {
            "event_id": ["v", "a"],
            "user_id": ["u1", "u1"],
            "event_type": ["product_view", "add_to_cart"],
            "ts": pa.array([1_000_000, 5_000_123], pa.timestamp("us", tz="UTC")),
        }
    )
    parquet = tmp / "ts.parquet"
    pq.write_table(table, parquet)
    out = tmp / "o.jsonl"
    assert (
        main(["backtest", "--rules", str(rules), "--events", str(parquet), "--out", str(out)]) == 0
    )
    assert _read(out)[0]["trigger_ts"] == 5_000


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-out-of-orderness", "soon"], "--max-out-of-orderness: bad duration 'soon'"),
        (["--events", "/nonexistent.jsonl"], "events file not found"),
    ],
)
def test_usage_errors_are_one_line(files, capsys, args, message):
    tmp, rules, events = files
    base = {"--rules": str(rules), "--events": str(events), "--out": str(tmp / "a.jsonl")}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    argv = ["backtest"] + [x for pair in base.items() for x in pair]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_generated_stream_replays_without_late_events(tmp_path, capsys):
    events = tmp_path / "gen.jsonl"
    assert (
        main(
            [
                "generate",
                "--users",
                "50",
                "--events",
                "3000",
                "--out-of-order",
                "2s",
                "--out",
                str(events),
            ]
        )
        == 0
    )
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    assert (
        main(
            [
                "backtest",
                "--rules",
                str(rules),
                "--events",
                str(events),
                "--out",
                str(tmp_path / "a.jsonl"),
            ]
        )
        == 0
    )
    summary = capsys.readouterr().out
    late_line = next(line for line in summary.splitlines() if line.strip().startswith("late"))
    assert late_line.split()[-1] == "0"
    assert len(_read(tmp_path / "a.jsonl")) > 0


def test_max_future_is_checked_at_start_up(files, capsys):
    tmp, rules, events = files
    argv = ["backtest", "--rules", str(rules), "--events", str(events)]
    assert main([*argv, "--out", str(tmp / "a.jsonl"), "--max-future", "later"]) == 2
    err = capsys.readouterr().err
    assert "--max-future: bad duration 'later'" in err and err.count("\n") == 1
