from __future__ import annotations

import asyncio

from tests.unit.crm.fakes import FakeClock, ScriptedLookup
from udfs.crm import CachedProfileLookup, LookupResult, ProfileLookup

OK = LookupResult("ok", {"segment": "vip"}, latency_ms=3.0)
DOWN = LookupResult("unavailable", latency_ms=200.0, reason="timeout")


def cached(inner: ScriptedLookup, clock: FakeClock, **options) -> CachedProfileLookup:
    return CachedProfileLookup(inner, clock=clock, **{"ttl_s": 60, "max_entries": 3, **options})


def test_a_hit_skips_the_backend_and_says_so():
    inner, clock = ScriptedLookup({"u-1": OK}), FakeClock()
    cache = cached(inner, clock)

    first, second = cache.lookup("u-1"), cache.lookup("u-1")

    assert inner.calls == ["u-1"]
    assert (first.status, first.cached) == ("ok", False)
    assert (second.status, second.profile, second.cached) == ("ok", {"segment": "vip"}, True)
    assert second.latency_ms < 1.0
    assert cache.stats().hits == 1 and cache.stats().misses == 1


def test_an_entry_expires_after_its_ttl():
    inner, clock = ScriptedLookup({"u-1": OK}), FakeClock()
    cache = cached(inner, clock)
    cache.lookup("u-1")

    clock.advance(59.999)
    cache.lookup("u-1")
    assert inner.calls == ["u-1"]

    clock.advance(0.001)
    cache.lookup("u-1")
    assert inner.calls == ["u-1", "u-1"]


def test_missing_is_cached_like_ok():
    inner, clock = ScriptedLookup(), FakeClock()
    cache = cached(inner, clock)

    assert cache.lookup("u-999").status == "missing"
    assert cache.lookup("u-999").cached
    assert inner.calls == ["u-999"]


def test_unavailable_is_not_cached_by_default():
    inner, clock = ScriptedLookup({"u-1": DOWN}), FakeClock()
    cache = cached(inner, clock)

    cache.lookup("u-1")
    inner.results["u-1"] = OK  # the CRM is back
    assert cache.lookup("u-1").status == "ok"
    assert inner.calls == ["u-1", "u-1"]


def test_unavailable_may_be_cached_briefly():
    inner, clock = ScriptedLookup({"u-1": DOWN}), FakeClock()
    cache = cached(inner, clock, unavailable_ttl_s=1.0)

    cache.lookup("u-1")
    inner.results["u-1"] = OK
    assert cache.lookup("u-1").status == "unavailable"
    clock.advance(1.0)
    assert cache.lookup("u-1").status == "ok"
    assert inner.calls == ["u-1", "u-1"]


def test_the_least_recently_used_entry_is_evicted_first():
    inner, clock = ScriptedLookup(), FakeClock()
    cache = cached(inner, clock, max_entries=3)
    for user in ("u-1", "u-2", "u-3"):
        cache.lookup(user)
    cache.lookup("u-1")  # u-2 is now the least recently used

    cache.lookup("u-4")
    inner.calls.clear()
    for user in ("u-1", "u-3", "u-4", "u-2"):
        cache.lookup(user)

    assert inner.calls == ["u-2"]
    assert cache.stats().evictions == 2  # u-2, then u-1 to make room for u-2 again
    assert cache.stats().size == 3


def test_zero_ttl_or_size_turns_caching_off():
    for options in ({"ttl_s": 0}, {"max_entries": 0}):
        inner, clock = ScriptedLookup({"u-1": OK}), FakeClock()
        cache = cached(inner, clock, **options)
        cache.lookup("u-1")
        cache.lookup("u-1")
        assert inner.calls == ["u-1", "u-1"], options


def test_invalidate_forgets_one_user_or_all():
    inner, clock = ScriptedLookup(), FakeClock()
    cache = cached(inner, clock)
    cache.lookup("u-1")
    cache.lookup("u-2")

    cache.invalidate("u-1")
    cache.lookup("u-1")
    cache.lookup("u-2")
    assert inner.calls == ["u-1", "u-2", "u-1"]

    cache.invalidate()
    assert cache.stats().size == 0


def test_async_lookups_share_the_cache_with_sync_ones():
    inner, clock = ScriptedLookup({"u-1": OK}), FakeClock()
    cache = cached(inner, clock)
    cache.lookup("u-1")

    result = asyncio.run(cache.alookup("u-1"))

    assert result.cached and inner.calls == ["u-1"]


def test_concurrent_async_lookups_of_one_user_make_one_backend_call():
    inner, clock = ScriptedLookup({"u-1": OK}), FakeClock()
    cache = cached(inner, clock)

    async def scenario() -> list[LookupResult]:
        inner.gate = asyncio.Event()
        waiting = [asyncio.create_task(cache.alookup("u-1")) for _ in range(5)]
        other = asyncio.create_task(cache.alookup("u-2"))
        await asyncio.sleep(0)
        inner.gate.set()
        await other
        return await asyncio.gather(*waiting)

    results = asyncio.run(scenario())

    assert sorted(inner.calls) == ["u-1", "u-2"]
    assert all(result.status == "ok" for result in results)


def test_a_cancelled_waiter_does_not_cancel_the_shared_lookup():
    inner, clock = ScriptedLookup({"u-1": OK}), FakeClock()
    cache = cached(inner, clock)

    async def scenario() -> LookupResult:
        inner.gate = asyncio.Event()
        impatient = asyncio.create_task(cache.alookup("u-1"))
        patient = asyncio.create_task(cache.alookup("u-1"))
        await asyncio.sleep(0)
        impatient.cancel()
        inner.gate.set()
        return await patient

    assert asyncio.run(scenario()).status == "ok"
    assert inner.calls == ["u-1"]


def test_it_is_a_profile_lookup_and_closes_its_backend():
    inner = ScriptedLookup()
    cache = CachedProfileLookup(inner)
    assert isinstance(cache, ProfileLookup)
    cache.close()
    assert inner.closed
