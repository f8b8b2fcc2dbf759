"""A deliberately naive reading of DESIGN.md's "Fate of a detection", for property tests.

It sees every action of a user at once, sorted by (trigger_ts, action_id), with no queue,
watermarks or pruning, and finds the end of a quiet-hours window by stepping minute by minute
(right for zones whose offsets are whole minutes, which every zone is today).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MINUTE_MS = 60_000


def oracle_fates(rules, actions) -> dict[str, tuple[str, int | None]]:
    """action_id -> (fate, deliver_at) for every action."""
    rules_by_id = {rule.id: rule for rule in rules}
    limits = rules.limits
    caps = limits.caps if limits else []
    quiet = limits.quiet_hours if limits else None
    by_user = defaultdict(list)
    for action in actions:
        by_user[action.user_id].append(action)
    fates = {}
    for user_actions in by_user.values():
        user_actions = sorted(user_actions, key=lambda a: (a.trigger_ts, a.action_id))
        counted = []
        for action in user_actions:
            fates[action.action_id] = _fate(
                rules_by_id[action.rule_id], action, caps, quiet, counted
            )
    return fates


def _fate(rule, action, caps, quiet, counted):
    if rule.audience:
        if action.enrichment in ("missing", "unavailable", "skipped"):
            return ("no_profile", None)
        if not _audience_matches(rule.audience, action.profile):
            return ("audience", None)
    quiet_now = False
    if quiet is not None:
        zone = _zone(action.profile, quiet.timezone, quiet.default_timezone)
        minutes = _window_minutes(quiet.start, quiet.end)
        quiet_now = _local_minute(action.trigger_ts, zone) in minutes
        if quiet_now and quiet.mode == "drop":
            return ("quiet_hours", None)
    for cap in caps:
        if cap.destinations and not set(cap.destinations) & set(action.destinations):
            continue
        earlier = [
            other
            for other in counted
            if action.trigger_ts - cap.per < other.trigger_ts <= action.trigger_ts
            and (not cap.destinations or set(cap.destinations) & set(other.destinations))
        ]
        if len(earlier) >= cap.max:
            return ("cap", None)
    counted.append(action)
    if action.arm == "control":
        return ("control", None)
    if quiet_now and quiet.mode == "defer":
        return ("deferred", _minute_walk_end(action.trigger_ts, zone, minutes))
    return ("sent", None)


def _zone(profile, field, default):
    if field:
        value = (profile or {}).get(field.split(".", 1)[1])
        if isinstance(value, str):
            try:
                return ZoneInfo(value)
            except Exception:
                pass
    return ZoneInfo(default)


def _window_minutes(start, end):
    def minute_of(clock):
        hours, minutes = clock.split(":")
        return int(hours) * 60 + int(minutes)

    minutes, minute, stop = set(), minute_of(start), minute_of(end)
    while minute != stop:
        minutes.add(minute)
        minute = (minute + 1) % 1440
    return minutes


def _local_minute(ts_ms, zone):
    local = (EPOCH + timedelta(milliseconds=ts_ms)).astimezone(zone)
    return local.hour * 60 + local.minute


def _minute_walk_end(ts_ms, zone, minutes):
    t = (ts_ms // MINUTE_MS + 1) * MINUTE_MS
    while _local_minute(t, zone) in minutes:
        t += MINUTE_MS
    return t


def _audience_matches(audience, profile):
    for key, condition in audience.items():
        name = key.split(".", 1)[1]
        present = profile.get(name) is not None
        value = profile.get(name)
        if not _holds(condition, present, value):
            return False
    return True


def _equal(a, b):
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is bool and type(b) is bool and a == b
    return a == b


def _holds(condition, present, value):
    if isinstance(condition, list):
        return present and any(_equal(value, option) for option in condition)
    if isinstance(condition, dict):
        return all(_operator(op, x, present, value) for op, x in condition.items())
    return present and _equal(value, condition)


def _operator(op, operand, present, value):
    if op == "exists":
        return present == operand
    if op == "ne":
        return not present or not _equal(value, operand)
    if not present or isinstance(value, bool) or isinstance(operand, bool):
        return False
    both_numbers = isinstance(value, (int, float)) and isinstance(operand, (int, float))
    both_strings = isinstance(value, str) and isinstance(operand, str)
    if not (both_numbers or both_strings):
        return False
    return {
        "gt": value > operand,
        "gte": value >= operand,
        "lt": value < operand,
        "lte": value <= operand,
    }[op]
