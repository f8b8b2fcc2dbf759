"""Send a batch of actions to the vendors they name, within rate limits, retrying what may succeed
later, until every (action, destination) has a final outcome: delivered or dead-lettered.

The only early exits are `stop` (SIGTERM, Ctrl-C) and losing a key to another replica in the
ledger: requests not yet finished come back unfinished, so the caller does not commit them and a
restart delivers them again. The ledger hears of every send and of every answer as it happens.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from schemas.action import Action
from udfs.delivery.ledger import Key, Ledger, MemoryLedger
from udfs.delivery.metrics import DeliveryMetrics
from udfs.delivery.redact import redact
from udfs.delivery.transport import TransportError
from udfs.vendors.http import HttpRequest, HttpResponse
from udfs.vendors.outcome import Outcome, Plan, Verdict
from udfs.vendors.ratelimit import RateLimiter, Slot
from udfs.vendors.retry import RetryPolicy

log = logging.getLogger(__name__)

VENDOR_DESTINATIONS = ("braze", "iterable")
# Gateway errors may come after the vendor accepted the request: as ambiguous as a timeout.
AMBIGUOUS_STATUSES = frozenset({502, 504})
# A thread starved this many times in a row sends in its last slot however late.
MAX_REBOOKINGS = 10
# How often a send held back by an earlier one still in flight asks whether it was answered.
CLEAR_POLL_S = 0.05


class Adapter(Protocol):
    name: str

    def plan(self, actions: Sequence[Action]) -> Plan: ...

    def classify(self, request: HttpRequest, response: HttpResponse) -> Outcome: ...


class Transport(Protocol):
    def send(self, request: HttpRequest) -> HttpResponse: ...


@dataclass(frozen=True)
class DeliveryResult:
    """The final word on one action at one destination (or `finished=False` after a stop)."""

    action: Action
    destination: str
    delivered: bool
    finished: bool = True
    status: int | None = None
    response: str = ""  # vendor's body (or our reason) for a dead letter
    reason: str = ""
    attempts: int = 0
    endpoint: str = ""


@dataclass
class DeliveryStats:
    requests: int = 0  # HTTP sends, including retries
    retries: int = 0  # sends after the first for a request (5xx, timeout, dropped, 429)
    rate_limited: int = 0  # 429 responses
    transport_errors: int = 0  # timeouts and dropped connections
    server_errors: int = 0  # 5xx
    delivered: int = 0  # (action, destination) pairs
    dead_lettered: int = 0
    ambiguous: int = 0  # (action, destination) pairs sent again after an unknown outcome
    by_status: Counter = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **increments: int) -> None:
        with self._lock:
            for name, value in increments.items():
                setattr(self, name, getattr(self, name) + value)

    def count_status(self, status: int | str) -> None:
        with self._lock:
            self.by_status[status] += 1

    def as_dict(self) -> dict:
        with self._lock:
            return {
                "requests": self.requests,
                "retries": self.retries,
                "rate_limited": self.rate_limited,
                "transport_errors": self.transport_errors,
                "server_errors": self.server_errors,
                "delivered": self.delivered,
                "dead_lettered": self.dead_lettered,
                "ambiguous": self.ambiguous,
                "by_status": {str(k): v for k, v in sorted(self.by_status.items(), key=str)},
            }


@dataclass(frozen=True)
class _RequestResult:
    request: HttpRequest
    outcome: Outcome | None  # None: stopped (or the keys lost) before a final outcome
    response: str
    attempts: int
    accepted_at_s: float = 0.0  # wall clock of the vendor's answer


class Deliverer:
    def __init__(
        self,
        adapters: Mapping[str, Adapter],
        limiters: Mapping[str, RateLimiter],
        transport: Transport,
        policy: RetryPolicy | None = None,
        concurrency: int = 8,
        stop: threading.Event | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        ledger: Ledger | None = None,
        metrics: DeliveryMetrics | None = None,
    ):
        self.adapters = dict(adapters)
        self.limiters = dict(limiters)
        self.transport = transport
        self.policy = policy or RetryPolicy()
        self.stop = stop or threading.Event()
        self.stats = DeliveryStats()
        self.ledger = ledger or MemoryLedger()
        self.metrics = metrics or DeliveryMetrics()
        self._rng = rng or random.Random()
        self._clock = clock
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="deliver")
        self._warned_unconfigured: set[str] = set()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.ledger.close()

    def deliver(self, actions: Sequence[Action]) -> list[DeliveryResult]:
        """One result per (action, vendor destination it names); `kafka` needs no delivery."""
        results: list[DeliveryResult] = []
        futures = []
        plans: dict[str, tuple[Plan, dict[str, Action]]] = {}
        for destination in VENDOR_DESTINATIONS:
            wanted = [a for a in actions if destination in a.destinations]
            if not wanted:
                continue
            adapter = self.adapters.get(destination)
            if adapter is None:
                results.extend(self._unconfigured(destination, wanted))
                continue
            plan = adapter.plan(wanted)
            by_id = {a.action_id: a for a in wanted}
            plans[destination] = (plan, by_id)
            for action_id, reason in plan.rejected.items():
                results.append(self._dead(by_id[action_id], destination, None, reason, reason, 0))
            for request in plan.requests:
                futures.append(
                    (destination, by_id, self._pool.submit(self._send, adapter, request))
                )
        for destination, by_id, future in futures:
            results.extend(self._results(destination, by_id, future.result()))
        return results

    def _unconfigured(self, destination: str, actions: Sequence[Action]) -> list[DeliveryResult]:
        reason = f"destination {destination} is not configured in this delivery job"
        if destination not in self._warned_unconfigured:
            self._warned_unconfigured.add(destination)
            log.warning("%s: actions for it go to the dead-letter topic", reason)
        return [self._dead(a, destination, None, reason, reason, 0) for a in actions]

    def _dead(
        self,
        action: Action,
        destination: str,
        status: int | None,
        response: str,
        reason: str,
        attempts: int,
        endpoint: str = "",
    ) -> DeliveryResult:
        self.stats.add(dead_lettered=1)
        return DeliveryResult(
            action, destination, False, True, status, response, reason, attempts, endpoint
        )

    def _results(
        self, destination: str, by_id: Mapping[str, Action], result: _RequestResult
    ) -> list[DeliveryResult]:
        request, outcome = result.request, result.outcome
        out: list[DeliveryResult] = []
        for action_id in request.action_ids:
            action = by_id[action_id]
            if outcome is None:
                out.append(
                    DeliveryResult(action, destination, False, False, attempts=result.attempts)
                )
            elif outcome.verdict is Verdict.DELIVERED and action_id not in outcome.failed:
                self.stats.add(delivered=1)
                self._observe_accepted(action, request, result.accepted_at_s)
                out.append(
                    DeliveryResult(
                        action,
                        destination,
                        True,
                        status=outcome.status,
                        attempts=result.attempts,
                        endpoint=request.path,
                    )
                )
            else:
                reason = outcome.failed.get(action_id) or outcome.message or outcome.verdict.value
                out.append(
                    self._dead(
                        action,
                        destination,
                        outcome.status,
                        result.response,
                        reason,
                        result.attempts,
                        request.path,
                    )
                )
        return out

    def _wait(self, seconds: float) -> bool:
        """Sleep unless stopped; True if still running."""
        if seconds > 0:
            return not self.stop.wait(seconds)
        return not self.stop.is_set()

    def _observe_accepted(self, action: Action, request: HttpRequest, at_s: float) -> None:
        labels = (request.vendor, request.path)
        self.metrics.delivered.labels(*labels).inc()
        # A deferred action was due at deliver_at, not at its trigger.
        due_ms = getattr(action, "deliver_at", None) or action.trigger_ts
        if isinstance(due_ms, int):
            self.metrics.trigger_to_accepted.labels(*labels).observe(max(0.0, at_s - due_ms / 1000))

    def _send(self, adapter: Adapter, request: HttpRequest) -> _RequestResult:
        """Send one request until it has a final outcome (or the job stops, or another replica
        took its keys over: both leave it unfinished)."""
        limiter = self.limiters.get(request.endpoint)
        keys = [(action_id, request.vendor) for action_id in request.action_ids]
        labels = (request.vendor, request.path)
        self.metrics.request_actions.labels(*labels).observe(len(keys))
        attempts = failures = rate_limited = 0  # failures: 5xx / transport, bounded
        while True:
            # Marked before the rate-limit wait, so the send follows its slot at once.
            already_sent = self._on_the_wire(keys, labels)
            if already_sent is None:
                return _RequestResult(request, None, "", attempts)
            ready, slot = self._ready(limiter, request.endpoint)
            if not ready:
                self.ledger.unsent([key for key in keys if key not in already_sent])
                return _RequestResult(request, None, "", attempts)
            attempts += 1
            try:
                outcome, body, maybe_accepted = self._attempt(adapter, request, attempts)
            finally:
                if slot is not None:
                    limiter.answered(slot)
            self._record_answer(keys, outcome, maybe_accepted)
            if outcome.verdict in (Verdict.DELIVERED, Verdict.FAILED):
                if outcome.verdict is Verdict.FAILED:
                    self.metrics.failed.labels(*labels, "client_error").inc()
                    log.warning(
                        "%s %s: %s permanently (%d actions to the dead-letter topic): %s",
                        request.vendor,
                        request.path,
                        outcome.status,
                        len(request.items),
                        redact(outcome.message)[:300],
                    )
                return _RequestResult(request, outcome, body, attempts, time.time())
            reason = _failure_reason(outcome, maybe_accepted)
            self.metrics.failed.labels(*labels, reason).inc()
            if outcome.verdict is Verdict.RATE_LIMITED:
                self.stats.add(rate_limited=1)
                rate_limited += 1
                if rate_limited > self.policy.max_rate_limited:
                    return _RequestResult(request, _gave_up(outcome, rate_limited), body, attempts)
                delay = self._rate_limited_delay(outcome, rate_limited, limiter)
            else:
                if outcome.status is not None:
                    self.stats.add(server_errors=1)
                failures += 1
                if failures >= self.policy.max_attempts:
                    log.warning(
                        "%s %s: giving up after %d attempts: %s",
                        request.vendor,
                        request.path,
                        attempts,
                        redact(outcome.message)[:300],
                    )
                    return _RequestResult(request, _gave_up(outcome, failures), body, attempts)
                delay = self.policy.backoff_s(failures, self._rng)
            if not self._wait(delay):
                return _RequestResult(request, None, "", attempts)
            self.metrics.retried.labels(*labels, reason).inc()

    def _rate_limited_delay(
        self, outcome: Outcome, rate_limited: int, limiter: RateLimiter | None
    ) -> float:
        delay = outcome.retry_after_s
        if delay is None:
            delay = self.policy.backoff_s(rate_limited, self._rng)
        # A little jitter so paused workers do not all return in the same millisecond.
        delay += self._rng.uniform(0, 0.05)
        if limiter is not None:
            limiter.pause(delay)
        return delay

    def _on_the_wire(self, keys: list[Key], labels: tuple[str, str]) -> set[Key] | None:
        """Tell the ledger the keys are about to be sent; None if another replica holds them now
        (it sends them; this request must not), else the keys already marked sent: their send is
        an ambiguous re-send."""
        ours, again = self.ledger.sending(keys)
        if again:
            self.stats.add(ambiguous=len(again))
            self.metrics.ambiguous.labels(*labels).inc(len(again))
        if not ours:
            log.warning("%s %s: keys taken over by another replica", *labels)
            return None
        return again

    def _record_answer(self, keys: list[Key], outcome: Outcome, maybe_accepted: bool) -> None:
        """Accepted keys are final at once (the shortest window for a crash to re-send them);
        a definite refusal clears the sent mark; an unknown outcome leaves it."""
        if outcome.verdict is Verdict.DELIVERED:
            failed = {
                (action_id, vendor) for action_id, vendor in keys if action_id in outcome.failed
            }
            self.ledger.accepted([key for key in keys if key not in failed])
            if failed:
                self.ledger.unsent(failed)
        elif not maybe_accepted:
            self.ledger.unsent(keys)

    def _ready(self, limiter: RateLimiter | None, endpoint: str) -> tuple[bool, Slot | None]:
        """Wait for the endpoint's rate limit (and any pause a 429 set): whether to send (False
        once stopped), and the slot whose answer the limiter must be told of. A slot this thread
        wakes up too late for is booked again: a late send would crowd the slots after it (a
        shared limiter's `late_s`; none for a process-local one). Then the send waits until the
        answers to those `requests` before it are a period old (RateLimiter.clear_in)."""
        if limiter is None:
            return not self.stop.is_set(), None
        late_s = getattr(limiter, "late_s", float("inf"))
        waited = self.metrics.rate_limit_wait.labels(endpoint)
        for booking in range(1, MAX_REBOOKINGS + 1):
            slot = limiter.reserve()
            due = self._clock() + slot.wait_s
            waited.inc(slot.wait_s)
            if not self._wait(slot.wait_s):
                return self._unsent(limiter, slot)
            # A 429 seen by another request while we waited pauses this one too.
            while (paused := limiter.paused_for()) > 0:
                waited.inc(paused)
                if not self._wait(paused):
                    return self._unsent(limiter, slot)
                due = self._clock()
            if self._clock() - due <= late_s or booking == MAX_REBOOKINGS:
                break
            self.metrics.rate_limit_rebooked.labels(endpoint).inc()
            limiter.answered(slot)  # never sent: it holds back no later send
        while (clear_in := limiter.clear_in(slot)) > 0:
            # Asked again within CLEAR_POLL_S: an earlier send still in flight may be answered.
            waited.inc(min(clear_in, CLEAR_POLL_S))
            if not self._wait(min(clear_in, CLEAR_POLL_S)):
                return self._unsent(limiter, slot)
        return not self.stop.is_set(), slot

    @staticmethod
    def _unsent(limiter: RateLimiter, slot: Slot) -> tuple[bool, None]:
        limiter.answered(slot)
        return False, None

    def _attempt(
        self, adapter: Adapter, request: HttpRequest, attempt: int
    ) -> tuple[Outcome, str, bool]:
        """One send, counted: the adapter's verdict on the response (a transport error is a
        retry), its body, and whether the vendor may have accepted it without saying so."""
        self.stats.add(requests=1, retries=1 if attempt > 1 else 0)
        try:
            response = self.transport.send(request)
        except TransportError as exc:
            self.stats.add(transport_errors=1)
            self.stats.count_status(exc.kind)
            return Outcome(Verdict.RETRY, None, str(exc)), str(exc), exc.maybe_sent
        self.stats.count_status(response.status)
        outcome = adapter.classify(request, response)
        maybe_accepted = outcome.verdict is Verdict.RETRY and response.status in AMBIGUOUS_STATUSES
        return outcome, response.text(), maybe_accepted


def _failure_reason(outcome: Outcome, maybe_accepted: bool) -> str:
    if outcome.verdict is Verdict.RATE_LIMITED:
        return "rate_limited"
    if outcome.status is not None:
        return "server_error"
    return "timeout" if "timeout" in outcome.message else "connection"


def _gave_up(outcome: Outcome, tries: int) -> Outcome:
    return Outcome(
        Verdict.FAILED,
        outcome.status,
        f"gave up after {tries} tries ({outcome.verdict.value}): {outcome.message}",
    )
