"""A TTL + size-bounded LRU cache in front of any `ProfileLookup`.

`ok` and `missing` results are kept for `ttl_s`. `unavailable` is kept only for
`unavailable_ttl_s` (default 0: not at all), so a user is asked again as soon as the CRM is back;
a short value (say 1 s) spares a struggling CRM a burst of repeat lookups for the same user.
Concurrent `alookup`s of one user on one event loop share a single backend call (single-flight).
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from udfs.crm.base import LookupResult, ProfileLookup


@dataclass(slots=True)
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    size: int = 0


class CachedProfileLookup:
    """`inner` behind an LRU of at most `max_entries` users, each entry fresh for its TTL.

    clock: seconds, monotonic; tests pass a fake one they move by hand. `ttl_s <= 0` or
    `max_entries <= 0` turns the cache off (single-flight still applies).
    """

    def __init__(
        self,
        inner: ProfileLookup,
        *,
        ttl_s: float = 300.0,
        max_entries: int = 100_000,
        unavailable_ttl_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.inner = inner
        self._ttl_s = {"ok": ttl_s, "missing": ttl_s, "unavailable": unavailable_ttl_s}
        self._max_entries = max_entries
        self._clock = clock
        # user_id -> (expires_at, result), least recently used first. One lock, because a Flink
        # operator may use the sync path on its main thread and the async path on its loop thread.
        self._entries: OrderedDict[str, tuple[float, LookupResult]] = OrderedDict()
        self._lock = threading.Lock()
        self._inflight: dict[str, asyncio.Future[LookupResult]] = {}
        self._stats = CacheStats()

    def __repr__(self) -> str:
        return (
            f"CachedProfileLookup({self.inner!r}, ttl_s={self._ttl_s['ok']}, "
            f"max_entries={self._max_entries})"
        )

    def stats(self) -> CacheStats:
        with self._lock:
            return dataclasses.replace(self._stats, size=len(self._entries))

    def _get(self, user_id: str) -> LookupResult | None:
        started = time.perf_counter()
        with self._lock:
            entry = self._entries.get(user_id)
            if entry is not None:
                expires_at, result = entry
                if self._clock() < expires_at:
                    self._entries.move_to_end(user_id)
                    self._stats.hits += 1
                    latency_ms = (time.perf_counter() - started) * 1000.0
                    return dataclasses.replace(result, latency_ms=latency_ms, cached=True)
                del self._entries[user_id]
            self._stats.misses += 1
        return None

    def _put(self, user_id: str, result: LookupResult) -> None:
        ttl_s = self._ttl_s[result.status]
        if ttl_s <= 0 or self._max_entries <= 0:
            return
        with self._lock:
            self._entries[user_id] = (self._clock() + ttl_s, result)
            self._entries.move_to_end(user_id)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
                self._stats.evictions += 1

    def fresh(self, user_id: str) -> bool:
        """Whether a fresh result is cached; cheap (no lock: one dict read under the GIL, no
        copy, no LRU move), for a caller that asks on every event."""
        entry = self._entries.get(user_id)
        return entry is not None and self._clock() < entry[0]

    def peek(self, user_id: str) -> LookupResult | None:
        """The fresh cached result (`cached` set), or None; never asks the backend."""
        return self._get(user_id)

    def put(self, user_id: str, result: LookupResult) -> None:
        """Keeps `result` for its status's TTL (see the class), as a lookup would."""
        self._put(user_id, result)

    def invalidate(self, user_id: str | None = None) -> None:
        """Forgets one user, or everyone."""
        with self._lock:
            if user_id is None:
                self._entries.clear()
            else:
                self._entries.pop(user_id, None)

    def lookup(self, user_id: str) -> LookupResult:
        cached = self._get(user_id)
        if cached is not None:
            return cached
        result = self.inner.lookup(user_id)
        self._put(user_id, result)
        return result

    async def alookup(self, user_id: str) -> LookupResult:
        cached = self._get(user_id)
        if cached is not None:
            return cached
        loop = asyncio.get_running_loop()
        pending = self._inflight.get(user_id)
        if pending is None or pending.get_loop() is not loop:
            pending = loop.create_task(self._fetch(user_id))
            self._inflight[user_id] = pending
        # shield: a caller that gives up (cancelled) does not cancel the lookup others await.
        return await asyncio.shield(pending)

    async def _fetch(self, user_id: str) -> LookupResult:
        try:
            result = await self.inner.alookup(user_id)
            self._put(user_id, result)
            return result
        finally:
            if self._inflight.get(user_id) is asyncio.current_task():
                del self._inflight[user_id]

    def close(self) -> None:
        self.inner.close()

    async def aclose(self) -> None:
        inner_aclose = getattr(self.inner, "aclose", None)
        if inner_aclose is not None:
            await inner_aclose()
        else:
            self.inner.close()
