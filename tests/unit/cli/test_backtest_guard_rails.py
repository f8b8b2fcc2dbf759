"""`moments backtest` with poisoned records (DESIGN.md "Guard rails"): each is dead-lettered with
its reason and changes no other action; with `--max-future off` a year-9999 event is accepted and
makes every later event late, which is what the guard rail prevents."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.cli import main
from tests.unit.cli.test_backtest import LINES, RULES
from udfs.decode import MAX_DEAD_LETTER_RAW_CHARS

BASE = {"event_id": "p", "user_id": "u9", "event_type": "add_to_cart", "ts": 2_000}
POISONED = [
    (BASE | {"ts": "9999-12-31T23:59:59.999Z"}, "is more than 1h ahead of now"),
    (BASE | {"ts": -1}, "ts must be >= 0"),
    (BASE | {"event_id": "x" * 513}, "event_id: 513 bytes of UTF-8, over the 512-byte limit"),
    (BASE | {"user_id": ""}, "user_id: String should have at least 1 character"),
    (BASE | {"event_type": "\u00e9" * 257}, "event_type: 514 bytes of UTF-8"),
    (BASE | {"properties": {"pad": "p" * (1 << 20)}}, "over the 1 MiB limit"),
]


def _backtest(tmp, lines: list[str], name: str, *extra: str) -> tuple[list[dict], list[dict]]:
    rules, events = tmp / "rules.yaml", tmp / f"{name}.jsonl"
    rules.write_text(RULES)
    events.write_text("\n".join(lines) + "\n")
    out, dlq = tmp / f"{name}.actions.jsonl", tmp / f"{name}.dlq.jsonl"
    argv = ["backtest", "--rules", str(rules), "--events", str(events), "--out", str(out)]
    assert main([*argv, "--dlq-out", str(dlq), *extra]) == 0
    read = [json.loads(line) for line in out.read_text().splitlines()]
    return read, [json.loads(line) for line in dlq.read_text().splitlines()]


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    return _backtest(tmp_path_factory.mktemp("clean"), LINES, "clean")


@pytest.mark.parametrize(("record", "why"), POISONED, ids=lambda p: str(p)[:24])
def test_a_poisoned_record_is_dead_lettered_and_changes_no_action(
    tmp_path, clean, capsys, record, why
):
    raw = json.dumps(record)
    lines = [LINES[0], raw, *LINES[1:]]  # early: a poisoned watermark would hit every later event
    actions, dlq = _backtest(tmp_path, lines, "poisoned")
    assert actions == clean[0] and len(actions) == 2
    kept = raw[:MAX_DEAD_LETTER_RAW_CHARS]  # an oversized raw value is cut, its size kept
    assert [(d["offset"], d["raw"]) for d in dlq] == [(2, kept)] + [
        (d["offset"] + 1, d["raw"]) for d in clean[1]
    ]
    assert dlq[0].get("raw_bytes") == (len(raw) if kept != raw else None)
    assert why in dlq[0]["reason"]
    summary = capsys.readouterr().out
    counts = {
        label: int(line.split()[-1].replace(",", ""))
        for line in summary.splitlines()
        for label in ("events read", "processed", "invalid (dead-lettered)", "late")
        if line.strip().startswith(label)
    }
    invalid = counts["invalid (dead-lettered)"]
    assert counts["events read"] == 7 == counts["processed"] + invalid + counts["late"]
    assert counts["invalid (dead-lettered)"] == 3


def test_without_the_future_bound_a_year_9999_event_makes_later_events_late(tmp_path, clean):
    lines = [LINES[0], json.dumps(POISONED[0][0]), *LINES[1:]]
    actions, dlq = _backtest(tmp_path, lines, "off", "--max-future", "off")
    assert len(dlq) == len(clean[1])  # accepted, and then...
    assert actions != clean[0]  # ...the add_to_cart after it is late: no quick_add


def test_parquet_rows_are_guarded_too(tmp_path, clean):
    rows = [json.loads(line) for line in LINES if line.strip() and line != "{broken"]
    rows = [r for r in rows if "event_id" in r]
    for r in rows:
        r["properties"] = json.dumps(r.get("properties", {}))
        r["ts"] = r["ts"] if isinstance(r["ts"], int) else 5000
    poisoned = BASE | {"ts": 253_402_300_799_999, "properties": "{}"}
    parquet = tmp_path / "events.parquet"
    pq.write_table(pa.Table.from_pylist([rows[0], poisoned, *rows[1:]]), parquet)
    rules, out, dlq = tmp_path / "rules.yaml", tmp_path / "a.jsonl", tmp_path / "d.jsonl"
    rules.write_text(RULES)
    argv = ["backtest", "--rules", str(rules), "--events", str(parquet), "--out", str(out)]
    assert main([*argv, "--dlq-out", str(dlq)]) == 0
    actions = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(a["rule_id"], a["trigger_ts"]) for a in actions] == [
        (a["rule_id"], a["trigger_ts"]) for a in clean[0]
    ]
    dead = [json.loads(line) for line in dlq.read_text().splitlines()]
    assert [d["offset"] for d in dead] == [1]
    assert "is more than 1h ahead of now" in dead[0]["reason"]
