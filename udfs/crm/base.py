"""The one CRM lookup interface every backend implements, its result type, and the retry budget.

A lookup never raises for CRM trouble: a down, slow or failing CRM is a `LookupResult` with status
`unavailable`, so the detection job still emits the action (DESIGN.md, Action contract).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

LookupStatus = Literal["ok", "missing", "unavailable"]

#: The key every backend looks users up by; it is dropped from the returned profile.
KEY_COLUMN = "user_id"

#: Backoff between attempts: 10 ms, 20 ms, 40 ms, ... capped, and only while the budget allows.
FIRST_BACKOFF_S = 0.01
MAX_BACKOFF_S = 0.1


@dataclass(frozen=True, slots=True)
class LookupResult:
    """The outcome of one profile lookup.

    status: ok (profile found), missing (the CRM has no such user), unavailable (down, timed out,
        refused, or answered with an error).
    profile: the profile fields (JSON-safe values, no `user_id`); empty unless status is ok.
        Shared with the cache: treat it as read-only (`udfs.enrich.enrich` copies it).
    latency_ms: wall-clock time of the lookup, retries included; a cache hit costs microseconds.
    cached: served from `CachedProfileLookup` without asking the backend.
    reason: why a lookup is unavailable, for logs and metrics ("timeout", "http 503", ...);
        never a secret, an e-mail or a phone number.
    """

    status: LookupStatus
    profile: dict[str, Any] = field(default_factory=dict)
    latency_ms: float = 0.0
    cached: bool = False
    reason: str = ""


@runtime_checkable
class ProfileLookup(Protocol):
    """Finds a user's CRM profile. Implementations are safe to call from one thread and one event
    loop at the same time (a Flink operator's main thread and its async runner)."""

    def lookup(self, user_id: str) -> LookupResult: ...

    async def alookup(self, user_id: str) -> LookupResult: ...

    def close(self) -> None: ...


class Budget:
    """The time one lookup may take, retries and backoff included, on the monotonic clock."""

    __slots__ = ("started", "deadline")

    def __init__(self, timeout_s: float):
        self.started = time.monotonic()
        self.deadline = self.started + timeout_s

    def remaining_s(self) -> float:
        return self.deadline - time.monotonic()

    def elapsed_ms(self) -> float:
        return (time.monotonic() - self.started) * 1000.0

    def allows_retry(self, attempt: int, retries: int, delay_s: float) -> bool:
        """True when attempt `attempt` (0-based) may be followed by another after `delay_s`."""
        return attempt < retries and self.remaining_s() > delay_s


def backoff_s(attempt: int, at_least_s: float = 0.0) -> float:
    return max(min(FIRST_BACKOFF_S * (2**attempt), MAX_BACKOFF_S), at_least_s)


_SECRET_PATTERNS = (
    (re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE), r"\1***"),
    (re.compile(r"(://[^:/@\s]+:)[^@\s]+@"), r"\1***@"),
    (re.compile(r"(bearer\s+)\S+", re.IGNORECASE), r"\1***"),
    (re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+"), "***@***"),
)


def describe_error(exc: BaseException) -> str:
    """`Type: first line of the message`, with passwords, tokens and e-mail addresses masked, for
    logs. Driver messages may quote connection strings; this keeps those out of the logs."""
    lines = str(exc).strip().splitlines()
    text = lines[0][:200] if lines else ""
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


class ThrottledWarning:
    """Logs a CRM failure at most once per `interval_s`, with the number of failures in between,
    so a CRM outage at thousands of lookups per second does not flood the task manager's log."""

    def __init__(self, logger: logging.Logger, interval_s: float = 30.0):
        self._logger = logger
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._last_logged = float("-inf")
        self._suppressed = 0

    def __call__(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last_logged < self._interval_s:
                self._suppressed += 1
                return
            suppressed, self._suppressed = self._suppressed, 0
            self._last_logged = now
        if suppressed:
            message += " (%d similar failures since the last message)"
            args = (*args, suppressed)
        self._logger.warning(message, *args)
