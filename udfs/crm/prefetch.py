"""Profile lookups on a few background threads, in batches, ahead of the actions that need them.

The detection operator asks for a user's profile as soon as one of the user's events may lead to
an action (`request`, never blocks) and reads it when the action fires (`ready`, never blocks):
with the CRM's usual latency the profile is there first. Workers take up to `max_batch` queued
users per query (`lookup_many`, e.g. PostgreSQL's `= ANY(%s)`; else one lookup each), so a burst
of cache misses costs a few round trips; with `linger_s` a worker that wakes for one request
waits that long for more to join its query (as a Kafka producer's linger.ms), so a steady trickle
of new users makes fewer, larger queries. Results go to a TTL + LRU cache (`CachedProfileLookup`);
`unavailable` is remembered for one budget only, so a CRM that is down is not asked again for
that user at once, and is asked again soon after.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable

from udfs.crm.base import LookupResult, ProfileLookup
from udfs.crm.cache import CachedProfileLookup

#: Most users looked up in one batch.
MAX_BATCH = 128
#: Most users waiting for a worker; past it a request is answered `unavailable` at once.
MAX_QUEUED = 20_000
#: After a failed batch the CRM counts as failing for this many lookup budgets (at least
#: FAILING_HOLD_MIN_S), whatever batches answer meanwhile: a CRM answering about as slowly as
#: the budget fails most batches, and one lucky batch must not make every action wait again.
FAILING_HOLD_BUDGETS = 5
FAILING_HOLD_MIN_S = 1.0


class ProfilePrefetcher:
    """`backend` (not cached) behind a cache, looked up by `workers` threads.

    timeout_s: the lookup budget; a request still queued when it runs out is answered
    `unavailable` without asking the CRM. `ready` and `request` are safe from any thread.
    """

    def __init__(
        self,
        backend: ProfileLookup,
        *,
        timeout_s: float,
        ttl_s: float = 300.0,
        max_entries: int = 100_000,
        workers: int = 2,
        max_batch: int = MAX_BATCH,
        max_queued: int = MAX_QUEUED,
        linger_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.backend = backend
        self.timeout_s = timeout_s
        self.cache = CachedProfileLookup(
            backend,
            ttl_s=ttl_s,
            max_entries=max_entries,
            unavailable_ttl_s=timeout_s,
            clock=clock,
        )
        # With the cache turned off a prefetched profile still has to wait for its action.
        self.cache_enabled = ttl_s > 0 and max_entries > 0
        self._clock = clock
        self._max_batch = max_batch
        self._max_queued = max_queued
        # Never more than a quarter of the budget: the batch's lookup needs the rest.
        self._linger_s = max(0.0, min(linger_s, timeout_s / 4))
        self._waiters = 0  # callers blocked in `wait`: no lingering while one is
        self._queue: collections.deque[tuple[str, float]] = collections.deque()
        self._inflight: dict[str, float] = {}  # user -> the end of its lookup's budget
        self._recent: dict[str, LookupResult] = {}  # results when the cache is off
        self._lock = threading.Condition()
        self._closed = False
        # When the latest batch the CRM failed (unavailable) was answered, None if none yet.
        self._failed_at: float | None = None
        self._failing_hold_s = max(FAILING_HOLD_BUDGETS * timeout_s, FAILING_HOLD_MIN_S)
        self._threads = [
            threading.Thread(target=self._work, name=f"crm-prefetch-{n}", daemon=True)
            for n in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def ready(self, user_id: str) -> LookupResult | None:
        """The user's profile if it is known now (a cache hit), else None."""
        found = self.cache.peek(user_id)
        if found is None and not self.cache_enabled:
            with self._lock:
                found = self._recent.pop(user_id, None)
        return found

    def request(self, user_id: str) -> bool:
        """Start looking the user up unless the profile is known or already on its way; True
        when the user is now queued."""
        if self.cache.fresh(user_id) or user_id in self._inflight:
            return False
        with self._lock:
            if user_id in self._inflight or self._closed:
                return False
            if self.failing() and self._inflight:
                return False  # while the CRM fails, one probe at a time, not a queue to expire
            if len(self._queue) >= self._max_queued:
                self._store(user_id, LookupResult("unavailable", reason="overloaded"))
                return False
            self._enqueue(user_id)
        return True

    def failing(self) -> bool:
        """True while a batch of the last few budgets was `unavailable` (FAILING_HOLD_BUDGETS):
        a caller need not wait for a lookup that will most likely fail too. Lookups go on, one
        probe at a time, and once none has failed for the hold, it is False again."""
        failed_at = self._failed_at
        return failed_at is not None and self._clock() - failed_at < self._failing_hold_s

    def pending(self, user_id: str) -> bool:
        with self._lock:
            return user_id in self._inflight

    def remaining_ms(self, user_id: str) -> float | None:
        """How long the user's lookup in flight may still take (its budget's rest), or None."""
        with self._lock:
            deadline = self._inflight.get(user_id)
        return None if deadline is None else max(0.0, (deadline - self._clock()) * 1000)

    def wait(self, user_id: str, timeout_s: float) -> LookupResult:
        """Blocks until the user's profile is known or `timeout_s` passed (then `unavailable`);
        for callers that may wait (file mode)."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            self._waiters += 1
            self._lock.notify_all()  # a lingering worker goes now
            try:
                while True:
                    found = self.ready(user_id)
                    if found is not None:
                        return found
                    if user_id not in self._inflight and not self._closed:
                        self._enqueue(user_id)
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return LookupResult("unavailable", reason="timeout")
                    self._lock.wait(min(remaining, 0.05))
            finally:
                self._waiters -= 1

    def _enqueue(self, user_id: str) -> None:
        """With the lock held."""
        deadline = self._clock() + self.timeout_s
        self._inflight[user_id] = deadline
        self._queue.append((user_id, deadline))
        # A worker waits for the first request, or lingers until the batch is full: only those
        # wake one (a wakeup per request would cost the operator's thread a GIL switch each).
        if len(self._queue) == 1 or len(self._queue) >= self._max_batch:
            self._lock.notify()

    def _store(self, user_id: str, result: LookupResult) -> None:
        self.cache.put(user_id, result)
        if not self.cache_enabled:
            self._recent[user_id] = result
            if len(self._recent) > self._max_queued:
                self._recent.pop(next(iter(self._recent)))

    def _take(self) -> list[tuple[str, float]] | None:
        with self._lock:
            while True:
                while not self._queue and not self._closed:
                    self._lock.wait()
                if self._linger_s and not self._closed:
                    self._lock.wait_for(self._batch_full, timeout=self._linger_s)
                if self._closed:
                    return None
                if self._queue:  # else another worker took what this one lingered for
                    count = min(len(self._queue), self._max_batch)
                    return [self._queue.popleft() for _ in range(count)]

    def _batch_full(self) -> bool:
        """With the lock held: stop lingering (a full batch, a caller blocked, closing)."""
        return self._closed or self._waiters > 0 or len(self._queue) >= self._max_batch

    def _work(self) -> None:
        while (batch := self._take()) is not None:
            now = self._clock()
            late = [user for user, deadline in batch if deadline <= now]
            users = [user for user, deadline in batch if deadline > now]
            results = {
                user: LookupResult("unavailable", reason="queued past budget") for user in late
            }
            if users:
                # The batch ends with its earliest request's budget (a lookup's own budget caps
                # it too): a user never waits longer than one budget from its request.
                budget_s = min(deadline for _, deadline in batch if deadline > now) - now
                found = self._lookup(users, budget_s)
                results.update(found)
                if all(r.status == "unavailable" for r in found.values()):
                    self._failed_at = self._clock()
            with self._lock:
                for user, result in results.items():
                    self._store(user, result)
                    self._inflight.pop(user, None)
                self._lock.notify_all()

    def _lookup(self, users: list[str], budget_s: float) -> dict[str, LookupResult]:
        try:
            many = getattr(self.backend, "lookup_many", None)
            if many is not None:
                return many(users, timeout_s=budget_s)
            return {user: self.backend.lookup(user) for user in users}
        except Exception as exc:  # noqa: BLE001 - a lookup never raises; a bug must not kill a worker
            failed = LookupResult("unavailable", reason=f"internal: {type(exc).__name__}")
            return dict.fromkeys(users, failed)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._queue.clear()
            self._lock.notify_all()
        for thread in self._threads:
            thread.join(timeout=1.0)
        self.backend.close()
