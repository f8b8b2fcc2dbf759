"""The live-rules record and history file: validated with `moments validate`'s errors, plus the
record's own fields; the effective schedule of a history in publication order."""

from __future__ import annotations

import json

import pytest

from schemas.rules import RuleFileError
from schemas.rules_record import (
    NO_RULES,
    effective_schedule,
    load_rules_history,
    parse_rules_record,
)

RULES = {
    "rules": [
        {
            "id": "quick_add",
            "pattern": {
                "type": "sequence",
                "steps": [{"event_type": "product_view"}, {"event_type": "add_to_cart"}],
                "within": "10s",
            },
            "action": {"name": "welcome_offer", "destinations": ["kafka"]},
        }
    ]
}


def record(version="v1", effective_from=None, rules=RULES, **extra) -> dict:
    return {"version": version, "effective_from": effective_from, "rules": rules, **extra}


def problems(value) -> list[str]:
    with pytest.raises(RuleFileError) as caught:
        parse_rules_record(value)
    return [str(p) for p in caught.value.problems]


def test_a_valid_record():
    parsed = parse_rules_record(record("v42", 1_763_805_600_000))
    assert (parsed.version, parsed.effective_from) == ("v42", 1_763_805_600_000)
    assert [rule.id for rule in parsed.rules] == ["quick_add"]
    assert parsed.document == RULES


def test_rules_problems_are_validates_own():
    from schemas.rules import parse_rules

    bad = {"rules": [{**RULES["rules"][0], "cooldown": "soon"}]}
    with pytest.raises(RuleFileError) as caught:
        parse_rules(bad)
    assert problems(record(rules=bad)) == [str(p) for p in caught.value.problems]
    assert problems(record(rules=bad))[0].startswith("rule quick_add: cooldown: ")


@pytest.mark.parametrize(
    "value,expected",
    [
        (record(version=""), "rule -: version: '' is not a valid version"),
        (record(version=3), "rule -: version: 3 is not a valid version"),
        (record(effective_from=-1), "rule -: effective_from: must be epoch milliseconds"),
        (record(effective_from="2026-01-01"), "rule -: effective_from: must be epoch"),
        (record(effective_from=True), "rule -: effective_from: must be epoch"),
        (record(extra=1), "rule -: extra: unknown record field"),
        ({"effective_from": None, "rules": RULES}, "rule -: version: required field is missing"),
        ({"version": "v1"}, "rule -: rules: required field is missing"),
        ([], "rule -: record: must be an object"),
    ],
)
def test_record_fields_are_checked(value, expected):
    assert any(problem.startswith(expected) for problem in problems(value)), problems(value)


def test_every_problem_is_reported_at_once():
    found = problems(record(version="", effective_from=-5, rules={"rules": []}))
    assert [p.split(":")[1].strip() for p in found] == ["version", "effective_from", "rules"]


def write_history(tmp_path, *lines) -> str:
    path = tmp_path / "history.jsonl"
    path.write_text("".join(line if isinstance(line, str) else json.dumps(line) for line in lines))
    return str(path)


def test_a_history_file_in_publication_order(tmp_path):
    path = write_history(tmp_path, record("v1"), "\n", "\n", record("v2", 1000), "\n")
    assert [r.version for r in load_rules_history(path)] == ["v1", "v2"]


def test_history_problems_name_their_line(tmp_path):
    path = write_history(tmp_path, record("v1"), "\n", "not json\n", record("", 5), "\n")
    with pytest.raises(RuleFileError) as caught:
        load_rules_history(path)
    found = [str(p) for p in caught.value.problems]
    assert found[0].startswith("rule -: record: not valid JSON") and found[0].endswith("(line 2)")
    assert found[1].startswith("rule -: version:") and found[1].endswith("(line 3)")


def test_an_empty_or_missing_history_is_an_error(tmp_path):
    with pytest.raises(RuleFileError, match="holds no rules record"):
        load_rules_history(write_history(tmp_path, "\n"))
    with pytest.raises(RuleFileError, match="cannot read"):
        load_rules_history(tmp_path / "missing.jsonl")


def schedule_of(*records):
    parsed = [parse_rules_record(r) for r in records]
    return [(s.since, s.version) for s in effective_schedule(parsed)]


def test_the_schedule_starts_from_the_first_version_or_with_no_rules():
    inf = float("inf")
    assert schedule_of(record("v1"), record("v2", 100)) == [(-inf, "v1"), (100, "v2")]
    assert schedule_of(record("v1", 50)) == [(-inf, NO_RULES), (50, "v1")]


def test_a_later_publication_supersedes_from_its_time():
    inf = float("inf")
    found = schedule_of(record("v1"), record("v2", 100), record("v3", 200), record("v4", 100))
    assert found == [(-inf, "v1"), (100, "v4")]
    found = schedule_of(record("v1"), record("v2", 100), record("v3", 50))
    assert found == [(-inf, "v1"), (50, "v3")]


def test_only_the_first_record_may_have_a_null_effective_from():
    with pytest.raises(RuleFileError, match="null means the watermark"):
        schedule_of(record("v1"), record("v2"))


def test_a_version_in_force_twice_is_an_error():
    with pytest.raises(RuleFileError, match="already in force"):
        schedule_of(record("v1"), record("v1", 100))
