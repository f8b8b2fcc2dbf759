"""`moments run --rules` keeps the file's `limits` (caps, quiet hours) with its rules: the job's
fate step reads them from the rule set it is given."""

from __future__ import annotations

import pickle

from jobs.detection.config import DetectConfig

RULES = """\
limits:
  caps: [{max: 2, per: 10s}]
  quiet_hours: {start: "22:00", end: "07:00", mode: drop}
rules:
  - id: quick_add
    pattern: {type: sequence, steps: [{event_type: view}, {event_type: add}], within: 10s}
    action: {name: offer, destinations: [kafka]}
"""


def test_the_rules_file_limits_reach_the_job(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    events = tmp_path / "events.jsonl"
    events.write_text("")
    config = DetectConfig.model_validate(
        {"rules": str(rules), "events_path": str(events), "out_path": str(tmp_path / "a.jsonl")}
    )
    assert [rule.id for rule in config.rules] == ["quick_add"]
    assert config.rules.limits.caps[0].max == 2
    assert config.rules.limits.quiet_hours.mode == "drop"
    # The operator gets the rules pickled.
    assert pickle.loads(pickle.dumps(config.rules)).limits == config.rules.limits
