import json

import pytest

from jobs.cli import main

VALID = """
rules:
  - id: login_trouble
    pattern: {type: count, match: {event_type: login_failed}, threshold: 3, within: 2m}
    cooldown: 1h
    action: {name: login_help, destinations: [kafka, iterable], workflow_id: 1234}
  - id: cart_silence
    pattern:
      type: silence
      start: {event_type: add_to_cart}
      unless: {event_type: [checkout_started, purchase]}
      gap: 45s
    action: {name: cart_nudge, destinations: [kafka, braze], campaign_id: c-1}
"""


def test_valid_file_prints_a_line_per_rule(tmp_path, capsys):
    path = tmp_path / "rules.yaml"
    path.write_text(VALID)
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("login_trouble: count: 3 x [event_type=login_failed] within 2m")
    assert "cooldown 1h -> login_help [kafka, iterable]" in out[0]
    assert out[1].startswith("cart_silence: silence:")
    assert out[2].endswith("2 rule(s) valid")


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (
            "{id: r1, pattern: {type: often, match: {}}, action: {name: a, destinations: [kafka]}}",
            "rule r1: pattern: unknown pattern type 'often' (expected one of count, sequence, "
            "absence, silence)",
        ),
        (
            "{id: r1, pattern: {type: count, match: {}, threshold: 0, within: 1s}, "
            "action: {name: a, destinations: [kafka]}}",
            "rule r1: pattern.threshold: must be >= 1, got 0",
        ),
        (
            "{id: r1, pattern: {type: count, match: {}, threshold: 2, within: 5 minutes}, "
            "action: {name: a, destinations: [kafka]}}",
            "rule r1: pattern.within: bad duration '5 minutes'",
        ),
        (
            "{id: r1, pattern: {type: count, match: {properties.x: {like: 1}}, threshold: 2, "
            "within: 1s}, action: {name: a, destinations: [kafka]}}",
            "rule r1: pattern.match: properties.x: unknown operator 'like'",
        ),
        (
            "{id: r1, pattern: {type: sequence, steps: [], within: 1s}, "
            "action: {name: a, destinations: [kafka]}}",
            "rule r1: pattern.steps: must not be empty",
        ),
        (
            "{id: r1, pattern: {type: silence, start: {}, gap: 1s}, "
            "action: {name: a, destinations: [sms]}}",
            "rule r1: action.destinations[0]: Input should be 'kafka', 'braze' or 'iterable'",
        ),
        (
            "{id: R-1, pattern: {type: silence, start: {}, gap: 1s}, "
            "action: {name: a, destinations: [kafka]}}",
            "rule R-1: id: 'R-1' is not a valid id",
        ),
        (
            "{id: r1, pattern: {type: silence, start: {}, gap: 1s, extra: 2}, "
            "action: {name: a, destinations: [kafka]}}",
            "rule r1: pattern.extra: unknown field",
        ),
        (
            "{pattern: {type: silence, start: {}, gap: 1s}, "
            "action: {name: a, destinations: [kafka]}}",
            "rule #1: id: required field is missing",
        ),
    ],
)
def test_each_problem_is_one_line_with_rule_field_and_reason(tmp_path, capsys, rule, expected):
    path = tmp_path / "rules.yaml"
    path.write_text(f"rules:\n  - {rule}\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert expected in err
    assert "Traceback" not in err


def test_duplicate_ids_and_all_problems_reported_together(tmp_path, capsys):
    path = tmp_path / "rules.yaml"
    path.write_text(
        VALID + "  - id: login_trouble\n    pattern: {type: count, match: {}, threshold: -1, "
        "within: 1s}\n    action: {name: a, destinations: [kafka]}\n"
    )
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert "rule login_trouble: id: duplicate id (also rule #1)" in err
    assert "rule login_trouble: pattern.threshold: must be >= 1, got -1" in err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rules: [\n", "rule -: file: not valid YAML at line 2"),
        ("name: x\n", "rule -: rules: the file must hold `rules: [...]`"),
        ("rules: []\n", "rule -: rules: must be a non-empty list of rules"),
    ],
)
def test_file_level_problems(tmp_path, capsys, text, expected):
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    assert main(["validate", str(path)]) == 2
    assert expected in capsys.readouterr().err


def test_missing_file(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "nope.yaml")]) == 2
    assert "cannot read" in capsys.readouterr().err


@pytest.mark.parametrize("which", ["event", "rules", "action"])
def test_json_schema_is_generated(capsys, which):
    assert main(["schema", which]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["$schema"].endswith("2020-12/schema")
    if which == "event":
        assert set(schema["required"]) == {"event_id", "user_id", "event_type", "ts"}
    if which == "rules":
        assert {"CountPattern", "SequencePattern", "AbsencePattern", "SilencePattern"} <= set(
            schema["$defs"]
        )
    if which == "action":
        assert "action_id" in schema["required"]


def test_help_and_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("moments ")
    assert main([]) == 0
    help_text = capsys.readouterr().out
    for command in ("validate", "backtest", "run", "deliver", "schema", "generate"):
        assert command in help_text
