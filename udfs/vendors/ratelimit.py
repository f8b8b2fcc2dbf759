"""Client-side rate limiting per vendor endpoint: a token bucket plus a pause for 429s."""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from schemas.durations import format_duration_ms, parse_duration_ms

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\S+)\s*$")


@dataclass(frozen=True)
class RateLimit:
    requests: int
    period_s: float

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """`3000/3s`, `250000/1h`, `10/1s`."""
        match = _RATE.match(text)
        if not match:
            raise ValueError(f"bad rate {text!r}: expected REQUESTS/DURATION, e.g. 10/1s")
        requests = int(match.group(1))
        if requests <= 0:
            raise ValueError(f"bad rate {text!r}: requests must be > 0")
        return cls(requests, parse_duration_ms(match.group(2)) / 1000)

    def __str__(self) -> str:
        return f"{self.requests}/{format_duration_ms(round(self.period_s * 1000))}"


class RateLimiter:
    """At most `requests` sends in any window of `period_s` (a sliding log), thread-safe.

    A sliding window is the strictest reading of "N per period": it also keeps within any fixed
    window the vendor may count in. `reserve()` books the earliest free slot and says how long to
    wait for it (callers sleep outside the lock, so waiting callers queue up in order).
    `pause(seconds)` holds every caller back after a 429.
    """

    def __init__(self, limit: RateLimit, clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self._clock = clock
        self._lock = threading.Lock()
        self._slots: deque[float] = deque()  # start times of the last `requests` reservations
        self._paused_until = float("-inf")

    def reserve(self) -> float:
        """Book one send; return the seconds to wait before making it (0 if none)."""
        with self._lock:
            now = self._clock()
            start = max(now, self._paused_until)
            if len(self._slots) >= self.limit.requests:
                start = max(start, self._slots[0] + self.limit.period_s)
                self._slots.popleft()
            self._slots.append(start)
            return start - now

    def pause(self, seconds: float) -> None:
        """No request may start within `seconds` from now (the vendor said it is rate limited)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + max(0.0, seconds))

    def paused_for(self) -> float:
        with self._lock:
            return max(0.0, self._paused_until - self._clock())
