"""`moments report` end to end in-process: inputs, errors a user can act on, the outputs."""

from __future__ import annotations

import json

import pytest

from jobs.cli import main
from jobs.report.inputs import OutcomeInputError, read_file
from tests.unit.report.conftest import arm_outcomes


def write_outcomes(path, outcomes, extra_lines=()):
    lines = [o.model_dump_json() for o in outcomes] + list(extra_lines)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_missing_file_is_a_user_error(tmp_path, capsys):
    assert main(["report", "--outcomes", str(tmp_path / "nope.jsonl")]) == 2
    assert (
        capsys.readouterr().err.strip()
        == f"moments report: {tmp_path / 'nope.jsonl'}: no such file"
    )


def test_an_invalid_line_is_named_by_its_number(tmp_path):
    path = write_outcomes(tmp_path / "o.jsonl", arm_outcomes("a", 2, 1), ["{not json"])
    with pytest.raises(OutcomeInputError, match=r"o\.jsonl:3: not JSON"):
        read_file(str(path))
    record = arm_outcomes("a", 1, 0)[0].model_dump()
    del record["converted"]
    path = write_outcomes(tmp_path / "o.jsonl", arm_outcomes("a", 1, 1), ["", json.dumps(record)])
    with pytest.raises(OutcomeInputError, match=r"o\.jsonl:3: not an outcome record: converted"):
        read_file(str(path))


def test_an_empty_file_is_a_user_error(tmp_path, capsys):
    (tmp_path / "o.jsonl").write_text("\n\n")
    assert main(["report", "--outcomes", str(tmp_path / "o.jsonl")]) == 2
    assert "no outcome records" in capsys.readouterr().err


def test_blank_lines_are_skipped(tmp_path):
    path = tmp_path / "o.jsonl"
    path.write_text("\n" + "\n\n".join(o.model_dump_json() for o in arm_outcomes("a", 3, 1)) + "\n")
    assert len(read_file(str(path))) == 3


def test_the_table_html_and_json(tmp_path, capsys):
    outcomes = arm_outcomes("control", 200, 20) + arm_outcomes("a", 200, 40)
    path = write_outcomes(tmp_path / "o.jsonl", outcomes + outcomes[:5])
    page, summary = tmp_path / "r.html", tmp_path / "r.json"
    assert (
        main(["report", "--outcomes", str(path), "--html", str(page), "--json", str(summary)]) == 0
    )
    out = capsys.readouterr().out
    assert out.startswith("rule cart_silence, experiment cart-2026-12\n")
    assert "5 repeated outcome records (same outcome_id) counted once" in out
    document = json.loads(summary.read_text())
    assert (document["outcomes"], document["repeats"]) == (400, 5)
    assert [a["arm"] for a in document["arms"]] == ["control", "a"]
    assert document["arms"][1]["lift"]["difference"] == pytest.approx(0.1)
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and text.count("<svg") == 2
    assert 'id="rate-bar-control"' in text and 'id="time-to-goal-a"' in text
    # Self-contained: nothing to fetch (the SVG namespaces are names, not requests).
    assert "<script" not in text and "src=" not in text and "<link" not in text


def test_the_sources_are_exclusive(capsys):
    with pytest.raises(SystemExit):
        main(["report", "--outcomes", "o.jsonl", "--bootstrap-servers", "127.0.0.1:1"])
    assert "not allowed with" in capsys.readouterr().err


def test_an_unreachable_broker_is_a_user_error(capsys):
    assert main(["report", "--bootstrap-servers", "127.0.0.1:1"]) == 2
    assert "no Kafka broker reachable" in capsys.readouterr().err
