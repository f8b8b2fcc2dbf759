"""Live rules in a running job (DESIGN.md "Live rules"): the versions it received, kept as the
entries of its broadcast state, and what one more record does to them. Pure: the Flink operator
(jobs/operators/detect_versions.py) stores the entries and turns the statuses into rows.

An entry is `(key, value)`: the key orders entries as they were published (the record's
partition and offset), the value is the record with the T the job applies it at, as JSON. A
valid record is applied at `T = effective_from`, or at the job's watermark when it is null or
below it; the first version without `--rules` is the initial one (in force from the start) when
its effective_from is null. An invalid record is rejected with its rule/field/reason problems;
the entries, hence the versions running, stay as they were.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import NamedTuple

from schemas.rules import RuleError, RuleFileError, RuleSet, parse_rules
from schemas.rules_record import RULES_KEY, RulesRecord, effective_schedule, parse_record_bytes
from udfs.rules_history import RulesHistory
from udfs.rules_scope import RulesScope

#: The version name of the `--rules FILE` a job starts with, in force from the start.
INITIAL_VERSION = "initial"
APPLIED, REJECTED = "applied", "rejected"


class Received(NamedTuple):
    """What a record did: the entry to store (None: nothing changes) and its status row."""

    entry: tuple[str, str] | None
    status: dict


def entry_key(partition: int, offset: int) -> str:
    """Sorts as the records were published (one partition: offset order)."""
    return f"{partition:05d}:{offset:020d}"


class LiveRules:
    """The versions of a job: `initial` (the --rules file, None without one) and the entries."""

    def __init__(self, initial: RuleSet | None, scope: RulesScope | None = None):
        self.initial = initial
        # Activity (udfs/engine.py) classified by the versions known when an event arrives could
        # hide a type a version received later reads: only a scope (udfs/rules_scope.py), which
        # every version is held to, makes it safe.
        self.scope = scope

    def records(self, entries: Iterable[tuple[str, str]]) -> list[RulesRecord]:
        records = []
        if self.initial is not None:
            records.append(RulesRecord(INITIAL_VERSION, None, self.initial, {}))
        for _, value in sorted(entries):
            stored = json.loads(value)
            rules = parse_rules(stored["rules"], stored["version"])
            records.append(
                RulesRecord(stored["version"], stored["applied_from"], rules, stored["rules"])
            )
        return records

    def history(self, entries: Iterable[tuple[str, str]]) -> RulesHistory:
        """The RulesHistory the entries make (the initial version alone when there are none)."""
        schedule = effective_schedule(self.records(entries), "<broadcast state>")
        return RulesHistory(schedule, activity=self.scope is not None, scope=self.scope)

    def receive(
        self,
        entries: dict[str, str],
        key: str,
        record_key: str | None,
        raw: str | None,
        watermark: int,
    ) -> Received:
        """A record read from the rules topic at `key` (entry_key), given the job's watermark."""
        status = {"status": REJECTED, "version": _version_of(raw), "effective_from": None}
        status.update(applied_from=None, watermark=watermark, problems=[], position=key)
        if key in entries:
            return Received(None, {**status, "status": "duplicate"})
        try:
            record = _record(record_key, raw, key)
            if self.scope is not None and (problems := self.scope.problems(record.rules)):
                raise RuleFileError(key, problems)
            status["version"], status["effective_from"] = record.version, record.effective_from
            applied_from = self.applied_from(entries, record.effective_from, watermark)
            value = {"version": record.version, "applied_from": applied_from}
            value.update(effective_from=record.effective_from, rules=record.document)
            entry = (key, json.dumps(value, sort_keys=True))
            self.history([*entries.items(), entry])  # a version already in force fails here
        except RuleFileError as error:
            status["problems"] = [
                {"rule": p.rule_id, "field": p.field, "reason": p.reason} for p in error.problems
            ]
            return Received(None, status)
        return Received(entry, {**status, "status": APPLIED, "applied_from": applied_from})

    def applied_from(self, entries, effective_from: int | None, watermark: int) -> int | None:
        """T: effective_from, raised to the watermark (null: the watermark), except the first
        version of a job without --rules, which with a null effective_from is in force from the
        start (None)."""
        if effective_from is None and self.initial is None and not entries:
            return None
        return watermark if effective_from is None else max(effective_from, watermark)


def _record(record_key: str | None, raw: str | None, source: str) -> RulesRecord:
    if record_key != RULES_KEY:
        raise RuleFileError(
            source, [RuleError("-", "key", f"must be {RULES_KEY!r}, got {record_key!r}")]
        )
    if raw is None:
        raise RuleFileError(source, [RuleError("-", "record", "no value (a tombstone)")])
    return parse_record_bytes(raw, source)


def _version_of(raw: str | None) -> str | None:
    try:
        version = json.loads(raw).get("version") if raw else None
    except (ValueError, AttributeError):
        return None
    return version if isinstance(version, str) else None
