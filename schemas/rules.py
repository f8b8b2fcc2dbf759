"""The rule contract: a YAML file holding `rules: [...]` (DESIGN.md, "Rule contract").

`load_rules` turns a file into validated `Rule` models or raises `RuleFileError` listing every
problem as `rule <id>: <field>: <reason>`, so a bad file is rejected before any job starts.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from schemas.campaign import Audience, Goal, Limits, Share
from schemas.conditions import validate_filter
from schemas.durations import DurationMs
from schemas.errors import UserError

RULE_ID = re.compile(r"^[a-z0-9_]+$")
DESTINATIONS = ("kafka", "braze", "iterable")


class RuleError(Exception):
    """One problem in a rules file, located by rule id and field."""

    def __init__(self, rule_id: str, field: str, reason: str):
        super().__init__(f"rule {rule_id}: {field}: {reason}")
        self.rule_id, self.field, self.reason = rule_id, field, reason


class RuleFileError(UserError):
    """A rules file that cannot be used; `problems` holds every RuleError found."""

    def __init__(self, path: str, problems: list[RuleError]):
        super().__init__("\n".join(str(p) for p in problems))
        self.path, self.problems = path, problems


def _validate_filter(value: object) -> dict[str, Any]:
    """A filter is a map from a key to a scalar, a list of scalars or an operator map."""
    if value is None:
        return {}
    return validate_filter(value)


FILTER_JSON_SCHEMA = {
    "type": "object",
    "description": "Keys event_type, device or properties.<name>; values a scalar (equals), a list "
    "(one of) or an operator map {gt|gte|lt|lte|ne: x} / {exists: true|false}. All keys must hold.",
    "propertyNames": {"pattern": r"^(event_type|device|properties\..+)$"},
    "additionalProperties": {
        "anyOf": [
            {"type": ["string", "number", "boolean"]},
            {"type": "array", "minItems": 1, "items": {"type": ["string", "number", "boolean"]}},
            {
                "type": "object",
                "minProperties": 1,
                "properties": {
                    "gt": {"type": ["string", "number"]},
                    "gte": {"type": ["string", "number"]},
                    "lt": {"type": ["string", "number"]},
                    "lte": {"type": ["string", "number"]},
                    "ne": {"type": ["string", "number", "boolean"]},
                    "exists": {"type": "boolean"},
                },
                "additionalProperties": False,
            },
        ]
    },
}

Filter = Annotated[
    dict[str, Any], BeforeValidator(_validate_filter), WithJsonSchema(FILTER_JSON_SCHEMA)
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CountPattern(_Strict):
    """Fires on the event that makes `threshold` matching events within `within`."""

    type: Literal["count"]
    match: Filter
    threshold: int = Field(ge=1)
    within: DurationMs


class SequencePattern(_Strict):
    """Fires on the last of `steps`, matched in order, first to last within `within`."""

    type: Literal["sequence"]
    steps: list[Filter] = Field(min_length=1)
    within: DurationMs


class AbsencePattern(_Strict):
    """Fires at `start.ts + within` unless a `missing` event came in between."""

    type: Literal["absence"]
    start: Filter
    missing: Filter
    within: DurationMs


class SilencePattern(_Strict):
    """Fires when an armed user sends nothing at all for `gap`."""

    type: Literal["silence"]
    start: Filter
    unless: Filter | None = None
    gap: DurationMs


Pattern = Annotated[
    CountPattern | SequencePattern | AbsencePattern | SilencePattern,
    Field(discriminator="type"),
]
PATTERN_TYPES = ("count", "sequence", "absence", "silence")


class ActionSpec(_Strict):
    """What a detection becomes: an action name, where it goes, and optional vendor targets."""

    name: str = Field(min_length=1)
    destinations: list[Literal["kafka", "braze", "iterable"]] = Field(min_length=1)
    campaign_id: str | None = Field(None, description="Braze: send via /campaigns/trigger/send.")
    canvas_id: str | None = Field(None, description="Braze: send via /canvas/trigger/send.")
    workflow_id: int | str | None = Field(
        None, description="Iterable: trigger this workflow via /api/workflows/triggerWorkflow."
    )
    profile_fields: list[str] | None = Field(
        None, description="CRM profile fields passed to vendors (default: all but email/phone)."
    )

    @field_validator("destinations")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("destinations are listed more than once")
        return value


class Variant(_Strict):
    """A split of the treated users; its `action` replaces the rule's."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$", description="Unique within the experiment.")
    weight: int = Field(gt=0, description="Integer weight; shares are weight / sum of weights.")
    action: ActionSpec = Field(description="The action treated users of this variant get.")

    @field_validator("name")
    @classmethod
    def _not_control(cls, value: str) -> str:
        if value == "control":
            raise ValueError("'control' is the holdout's arm, not a variant name")
        return value


class Experiment(_Strict):
    """Who the rule runs for (`rollout`) and who of those is held out (`holdout`), by hash."""

    salt: str | None = Field(
        None, min_length=1, description="Default: the rule id. A new salt reshuffles users."
    )
    rollout: Share = Field(1.0, description="Share of users the rule runs for at all.")
    holdout: Share = Field(0.0, description="Share of those users in the control arm.")
    variants: list[Variant] | None = Field(None, min_length=1)

    @field_validator("variants")
    @classmethod
    def _unique_names(cls, value: list[Variant] | None) -> list[Variant] | None:
        names = [v.name for v in value or ()]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"variant names must be unique: {', '.join(dupes)} repeated")
        return value

    @model_validator(mode="after")
    def _holdout_not_all(self) -> Experiment:
        if self.holdout >= 1.0 and self.variants:
            raise ValueError("holdout 100% leaves no user for the variants")
        return self


class Rule(_Strict):
    id: str = Field(pattern=RULE_ID.pattern, description="Unique id, [a-z0-9_]+.")
    description: str | None = None
    pattern: Pattern
    cooldown: DurationMs | None = Field(
        None, description="Frequency cap per (rule, user), in event time."
    )
    action: ActionSpec
    audience: Audience | None = Field(
        None, description="Who may get the action: filters on the enriched CRM profile."
    )
    experiment: Experiment | None = Field(
        None, description="Rollout, holdout and variants, assigned per user by hash."
    )
    goal: Goal | None = Field(
        None, description="What counts as converting: an event filter plus `within`."
    )

    @property
    def salt(self) -> str | None:
        """The experiment's salt (the rule id by default); None without an experiment."""
        if self.experiment is None:
            return None
        return self.experiment.salt or self.id


class RuleFile(_Strict):
    limits: Limits | None = None
    rules: list[Rule] = Field(min_length=1)


class RuleSet(list):
    """The rules of a file in file order (a list of Rule) and the file's `limits` (None: none)."""

    def __init__(self, rules=(), limits: Limits | None = None):
        super().__init__(rules)
        self.limits = limits

    def __reduce__(self):
        return (RuleSet, (list(self), self.limits))


def _field_path(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for i, part in enumerate(loc):
        # The discriminated union adds the tag ("count", ...) after "pattern": not a user's field.
        if i > 0 and loc[i - 1] == "pattern" and part in PATTERN_TYPES:
            continue
        if isinstance(part, int):
            parts.append(f"[{part}]")
        else:
            parts.append(("." if parts else "") + str(part))
    return "".join(parts) or "rule"


def _reason(item: dict[str, Any], raw: dict[str, Any]) -> str:
    kind, message = item["type"], item["msg"]
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "union_tag_invalid":
        return (
            f"unknown pattern type {item['input'].get('type')!r} "
            f"(expected one of {', '.join(PATTERN_TYPES)})"
        )
    if kind == "union_tag_not_found":
        return f"pattern.type is missing (expected one of {', '.join(PATTERN_TYPES)})"
    if kind == "string_pattern_mismatch" and item["loc"] == ("id",):
        return f"{raw.get('id')!r} is not a valid id (lowercase letters, digits and _ only)"
    if kind == "too_short":
        return "must not be empty"
    if kind in ("greater_than_equal", "greater_than"):
        op = ">=" if kind == "greater_than_equal" else ">"
        bound = item["ctx"]["ge" if kind == "greater_than_equal" else "gt"]
        return f"must be {op} {bound}, got {item['input']!r}"
    if message.startswith("Value error, "):
        return message[len("Value error, ") :]
    return message


def _rule_label(raw: object, index: int) -> str:
    if isinstance(raw, dict) and isinstance(raw.get("id"), str) and raw["id"]:
        return raw["id"]
    return f"#{index + 1}"


def parse_rules(document: object, source: str = "<rules>") -> RuleSet:
    """Validate an already-parsed rules document; raise RuleFileError with every problem."""
    if not isinstance(document, dict) or "rules" not in document:
        raise RuleFileError(source, [RuleError("-", "rules", "the file must hold `rules: [...]`")])
    raw_rules = document["rules"]
    problems: list[RuleError] = []
    extra = sorted(set(document) - {"rules", "limits"})
    if extra:
        problems.append(RuleError("-", ", ".join(extra), "unknown top-level field"))
    limits = _parse_limits(document.get("limits"), problems)
    if not isinstance(raw_rules, list) or not raw_rules:
        problems.append(RuleError("-", "rules", "must be a non-empty list of rules"))
        raise RuleFileError(source, problems)
    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(raw_rules):
        label = _rule_label(raw, index)
        if isinstance(raw, dict) and isinstance(raw.get("id"), str):
            if raw["id"] in seen:
                problems.append(
                    RuleError(label, "id", f"duplicate id (also rule #{seen[raw['id']] + 1})")
                )
            seen.setdefault(raw["id"], index)
        if not isinstance(raw, dict):
            problems.append(RuleError(label, "rule", "must be a mapping"))
            continue
        try:
            rule = Rule.model_validate(raw)
        except ValidationError as error:
            for item in error.errors(include_url=False):
                problems.append(RuleError(label, _field_path(item["loc"]), _reason(item, raw)))
            continue
        if rule.experiment is not None and rule.goal is None:
            reason = "needs a goal (a holdout that measures nothing only loses lift)"
            problems.append(RuleError(label, "experiment", reason))
        rules.append(rule)
    if problems:
        raise RuleFileError(source, problems)
    return RuleSet(rules, limits)


def _parse_limits(raw: object, problems: list[RuleError]) -> Limits | None:
    if raw is None:
        return None
    try:
        return Limits.model_validate(raw)
    except ValidationError as error:
        for item in error.errors(include_url=False):
            path = _field_path(("limits", *item["loc"]))
            problems.append(RuleError("-", path, _reason(item, {})))
        return None


def load_rules(path: str | Path) -> RuleSet:
    """Read and validate a YAML rules file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise RuleFileError(
            str(path), [RuleError("-", "file", f"cannot read {path}: {error.strerror}")]
        ) from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise RuleFileError(
            str(path), [RuleError("-", "file", f"not valid YAML{where}: {problem}")]
        ) from None
    return parse_rules(document, str(path))
