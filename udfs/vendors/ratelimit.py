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


@dataclass(frozen=True)
class Slot:
    """One booked send: its place in the endpoint's order, and the seconds to wait for it."""

    seq: int
    wait_s: float


# A request's arrival at the vendor lies between its send and its answer; a send whose answer
# never came (a crash) arrived by its start plus this much at the latest (the client's timeout).
DEFAULT_IN_FLIGHT_S = 10.0


class RateLimiter:
    """At most `requests` requests reach the vendor in any window of `period_s`, thread-safe.

    Two steps per send. `reserve()` books the earliest slot of a sliding log of starts (callers
    sleep outside the lock, so waiting callers queue up in order). `clear_in(slot)` then holds the
    send until every send booked `requests` or more before it was answered a whole period ago:
    the vendor timestamps a request between its send and its answer, so `requests + 1` of them
    can never arrive within one period, however unevenly the network or a busy host delays them
    (starts alone cannot promise that). `answered(slot)` records the answer. `pause(seconds)`
    holds every caller back after a 429. A sliding window is the strictest reading of "N per
    period": it also keeps within any fixed window the vendor may count in.
    """

    def __init__(
        self,
        limit: RateLimit,
        clock: Callable[[], float] = time.monotonic,
        in_flight_s: float = DEFAULT_IN_FLIGHT_S,
    ):
        self.limit = limit
        self.in_flight_s = in_flight_s
        self._clock = clock
        self._lock = threading.Lock()
        self._slots: deque[float] = deque()  # start times of the last `requests` reservations
        self._paused_until = float("-inf")
        self._seq = 0
        self._sends: dict[int, list] = {}  # seq -> [start, answered at or None]

    def reserve(self) -> Slot:
        """Book one send: its slot, with the seconds to wait for it (0 if none)."""
        with self._lock:
            now = self._clock()
            start = max(now, self._paused_until)
            if len(self._slots) >= self.limit.requests:
                start = max(start, self._slots[0] + self.limit.period_s)
                self._slots.popleft()
            self._slots.append(start)
            self._forget(now)
            seq, self._seq = self._seq, self._seq + 1
            self._sends[seq] = [start, None]
            return Slot(seq, start - now)

    def clear_in(self, slot: Slot) -> float:
        """Seconds until `slot` may be sent (0: now), by the answers to the sends booked at least
        `requests` before it; an unanswered one counts as answered at its start plus
        `in_flight_s`, so ask again sooner if it may be answered meanwhile."""
        with self._lock:
            latest = max(
                (self._done_at(send) for seq, send in self._sends.items()
                 if seq <= slot.seq - self.limit.requests),
                default=float("-inf"),
            )  # fmt: skip
            return max(0.0, latest + self.limit.period_s - self._clock())

    def answered(self, slot: Slot) -> None:
        """The send of `slot` has its answer (or failed on the way, or was never made)."""
        with self._lock:
            entry = self._sends.get(slot.seq)
            if entry is not None and entry[1] is None:
                entry[1] = self._clock()

    def _forget(self, now: float) -> None:
        """Drop answers a period old: they hold back no send from now on."""
        period = self.limit.period_s
        for seq in [
            seq for seq, send in self._sends.items() if self._done_at(send) + period <= now
        ]:
            del self._sends[seq]

    def _done_at(self, send: list) -> float:
        """When a send's request was at the vendor at the latest: its answer, else its start
        plus `in_flight_s`."""
        start, answered = send
        return answered if answered is not None else start + self.in_flight_s

    def pause(self, seconds: float) -> None:
        """No request may start within `seconds` from now (the vendor said it is rate limited)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + max(0.0, seconds))

    def paused_for(self) -> float:
        with self._lock:
            return max(0.0, self._paused_until - self._clock())
