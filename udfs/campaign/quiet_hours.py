"""Quiet hours in a user's local time (DESIGN.md "Fate of a detection", steps 2 and 5).

An instant is inside the window iff the local wall-clock time of that instant, to the minute,
lies in `[start, end)`; when `start > end` the window wraps midnight (`21:00`-`08:00`). Only the
wall clock counts, so across a DST change the window follows the clock the user sees:

- `window_end(ts)` is the earliest instant `>= ts` that is not inside the window (`ts` itself
  when `ts` is outside). Usually that is the instant the clock reads `end`.
- Spring forward over `end` (the local `end` does not exist that day, e.g. 02:30 in New York on
  the second Sunday of March): the window ends at the transition instant, when the clock jumps
  from 01:59:59.999 to 03:00, the first local time outside the window.
- Fall back with `end` occurring twice (e.g. 01:30 in New York on the first Sunday of November):
  the window ends at the first 01:30 (EDT). When the clock then falls back from 02:00 EDT to
  01:00 EST it is inside the window again, so an instant in that second hour is quiet too and its
  window ends at the second 01:30 (EST).
- A clock that falls back out of the window (Berlin, window 02:30-03:30: at 03:00 CEST the clock
  reads 02:00 CET) ends the window at the transition instant.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_DAY_MINUTES = 24 * 60
_MINUTE_MS = 60_000
# Offset changes are searched for at this stride, then bisected to the second: tzdata has no two
# changes of a zone's UTC offset less than a day apart that undo each other within one stride.
_SCAN_S = 3600


@lru_cache(maxsize=4096)
def _zone(key: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


@lru_cache(maxsize=256)
def _minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


def zone_for(profile: dict | None, field: str | None, default: str) -> ZoneInfo:
    """The zone named by `profile[field]` (`field` written `profile.<name>` or `<name>`); the
    `default` zone when there is no field, or its value is missing, not a string or not a known
    IANA zone."""
    if field and profile:
        name = field[8:] if field.startswith("profile.") else field
        value = profile.get(name)
        if isinstance(value, str) and value:
            zone = _zone(value)
            if zone is not None:
                return zone
    zone = _zone(default)
    if zone is None:
        raise ValueError(f"unknown IANA time zone {default!r}")
    return zone


def _inside(minute: int, start: int, end: int) -> bool:
    if start < end:
        return start <= minute < end
    return minute >= start or minute < end


def in_quiet_hours(ts_ms: int, zone: ZoneInfo, start: str, end: str) -> bool:
    """Whether the local wall time of the instant `ts_ms` is in `[start, end)` (may wrap)."""
    local = datetime.fromtimestamp(ts_ms // 1000, zone)
    return _inside(local.hour * 60 + local.minute, _minutes(start), _minutes(end))


def _offset(second: int, zone: ZoneInfo):
    return datetime.fromtimestamp(second, zone).utcoffset()


def _first_offset_change(zone: ZoneInfo, after_s: int, offset, until_s: int) -> int | None:
    """The first whole second in `(after_s, until_s]` whose UTC offset differs from `offset`."""
    low = after_s
    while low < until_s:
        high = min(low + _SCAN_S, until_s)
        if _offset(high, zone) != offset:
            while high - low > 1:  # offset(low) == offset, offset(high) != offset
                middle = (low + high) // 2
                if _offset(middle, zone) == offset:
                    low = middle
                else:
                    high = middle
            return high
        low = high
    return None


def window_end(ts_ms: int, zone: ZoneInfo, start: str, end: str) -> int:
    """The earliest instant (epoch ms) `>= ts_ms` whose local wall time is outside `[start, end)`:
    when a deferred action is due. See the module doc for DST changes."""
    start_minute, end_minute = _minutes(start), _minutes(end)
    t = ts_ms
    while True:
        second, millis = divmod(t, 1000)
        local = datetime.fromtimestamp(second, zone)
        minute = local.hour * 60 + local.minute
        if not _inside(minute, start_minute, end_minute):
            return t
        # While the offset holds, the clock reads `end` this many ms later.
        to_end = ((end_minute - minute) % _DAY_MINUTES) * _MINUTE_MS - local.second * 1000 - millis
        candidate = t + to_end
        change = _first_offset_change(zone, second, local.utcoffset(), candidate // 1000)
        if change is None:
            return candidate
        # The clock jumped before reaching `end`: look again from the jump.
        t = change * 1000
