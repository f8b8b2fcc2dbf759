"""The live-rules record (DESIGN.md "Live rules"): key `rules`, value `{"version": "v42",
"effective_from": <epoch ms or null>, "rules": <the rules file as JSON>}`, one per published
version on `moments.rules`, or one per line of a `--rules-history` file in publication order.

A record is validated as `moments validate` validates a rules file (`RuleFileError` listing
`rule <id>: <field>: <reason>`), plus its own fields as `rule -: version|effective_from: ...`.
`effective_schedule` turns records in publication order into the versions in force over event
time, what every host applies.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, NamedTuple

from schemas.rules import RuleError, RuleFileError, RuleSet, parse_rules

RULES_KEY = "rules"
VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+-]{0,127}$")
RECORD_FIELDS = ("version", "effective_from", "rules")
#: Before the first version's effective_from (when it has one) no rule runs.
NO_RULES = ""


class RulesRecord(NamedTuple):
    version: str
    effective_from: int | None
    rules: RuleSet
    document: dict[str, Any]  # the rules file as JSON, as published


def record_value(version: str, effective_from: int | None, document: dict[str, Any]) -> dict:
    """The record's value for `moments rules publish` (validate it with `parse_rules_record`)."""
    return {"version": version, "effective_from": effective_from, "rules": document}


def parse_rules_record(value: object, source: str = "<rules record>") -> RulesRecord:
    """Validate a record's value (parsed JSON); raise RuleFileError with every problem."""
    if not isinstance(value, dict):
        raise RuleFileError(
            source, [RuleError("-", "record", "must be an object {version, effective_from, rules}")]
        )
    problems: list[RuleError] = []
    extra = sorted(set(value) - set(RECORD_FIELDS))
    if extra:
        problems.append(RuleError("-", ", ".join(extra), "unknown record field"))
    version = value.get("version")
    if "version" not in value:
        problems.append(RuleError("-", "version", "required field is missing"))
    elif not isinstance(version, str) or not VERSION.match(version):
        problems.append(
            RuleError(
                "-",
                "version",
                f"{version!r} is not a valid version (1-128 of letters, digits and ._:+-, "
                "starting with a letter or digit)",
            )
        )
    effective_from = value.get("effective_from")
    if effective_from is not None and (
        isinstance(effective_from, bool)
        or not isinstance(effective_from, int)
        or effective_from < 0
    ):
        problems.append(
            RuleError(
                "-",
                "effective_from",
                f"must be epoch milliseconds (an integer >= 0) or null, got {effective_from!r}",
            )
        )
    rules: RuleSet | None = None
    if "rules" not in value:
        problems.append(RuleError("-", "rules", "required field is missing"))
    else:
        try:
            rules = parse_rules(value["rules"], source)
        except RuleFileError as error:
            problems.extend(error.problems)
    if problems:
        raise RuleFileError(source, problems)
    return RulesRecord(version, effective_from, rules, value["rules"])


def parse_record_bytes(raw: bytes | str, source: str = "<rules record>") -> RulesRecord:
    """A record from its JSON text (a Kafka message value or a history line)."""
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise RuleFileError(
            source, [RuleError("-", "record", f"not valid JSON: {error}")]
        ) from None
    return parse_rules_record(value, source)


def load_rules_history(path: str | Path) -> list[RulesRecord]:
    """A `--rules-history` file: one record per line, in publication order (blank lines
    skipped). Every problem of every line is reported, each line as `<path>:<line>`."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise RuleFileError(
            str(path), [RuleError("-", "file", f"cannot read {path}: {error.strerror}")]
        ) from None
    records: list[RulesRecord] = []
    problems: list[RuleError] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(parse_record_bytes(line, f"{path}:{number}"))
        except RuleFileError as error:
            problems.extend(
                RuleError(p.rule_id, p.field, f"{p.reason} (line {number})") for p in error.problems
            )
    if not records and not problems:
        problems.append(RuleError("-", "file", f"{path} holds no rules record"))
    if problems:
        raise RuleFileError(str(path), problems)
    return records


class ScheduledVersion(NamedTuple):
    since: float  # event time from which the version is in force (-inf: from the start)
    version: str
    rules: RuleSet


def effective_schedule(records: list[RulesRecord], source: str = "<history>") -> list:
    """The versions in force over event time, from records in publication order whose
    `effective_from` is already what the host applies (a job resolves null, and a T below its
    watermark, to that watermark at receipt; a backtest takes them as written).

    A version is in force from its T until the next one's; a version supersedes, from its T,
    every version published before it (a later publication with an earlier T replaces what was
    scheduled at or after that T). Only the first record may have a null effective_from (in force
    from the start); before a first version with a T, no rule runs (version `NO_RULES`).
    """
    schedule: list[ScheduledVersion] = []
    problems: list[RuleError] = []
    for number, record in enumerate(records, start=1):
        since: float | None = record.effective_from
        if since is None:
            if number > 1:
                problems.append(
                    RuleError(
                        "-",
                        "effective_from",
                        f"version {record.version} (record {number}): null means the watermark "
                        "when the job received it, unknown here; give it explicitly (only the "
                        "first version may omit it)",
                    )
                )
                continue
            since = float("-inf")
        while schedule and schedule[-1].since >= since:
            schedule.pop()
        if any(kept.version == record.version for kept in schedule):
            problems.append(
                RuleError("-", "version", f"{record.version} (record {number}) is already in force")
            )
            continue
        schedule.append(ScheduledVersion(since, record.version, record.rules))
    if problems:
        raise RuleFileError(source, problems)
    if not schedule or schedule[0].since != float("-inf"):
        schedule.insert(0, ScheduledVersion(float("-inf"), NO_RULES, RuleSet()))
    return schedule
