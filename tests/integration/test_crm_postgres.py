"""The PostgreSQL CRM backend against a real database seeded with u-1..u-400."""

from __future__ import annotations

import asyncio
import gc
import threading
import time

import psycopg
import pytest

from tests.helpers import wait_for
from udfs.crm import CachedProfileLookup, build_lookup, from_env
from udfs.crm.postgres import PostgresProfileLookup

pytestmark = pytest.mark.integration

CLOSED_PORT_DSN = "postgresql://moments@127.0.0.1:1/crm"
SEEDED_U1 = {
    "email": "user1@example.com",
    "phone": "+15550000001",
    "first_name": "Ada",
    "segment": "vip",
    "country": "US",
}


@pytest.fixture
def lookup(crm_dsn):
    crm = PostgresProfileLookup(crm_dsn, timeout_s=2.0)  # generous: a cold pool connects first
    yield crm
    crm.close()


def assert_seeded_u1(result):
    assert result.status == "ok", result
    assert {name: result.profile[name] for name in SEEDED_U1} == SEEDED_U1
    assert "user_id" not in result.profile
    assert isinstance(result.profile["updated_at"], str)  # ISO 8601, JSON-safe
    assert "T" in result.profile["updated_at"]


def test_a_seeded_user_is_found(lookup):
    assert_seeded_u1(lookup.lookup("u-1"))
    u2 = lookup.lookup("u-2")
    assert (u2.profile["segment"], u2.profile["country"]) == ("regular", "GB")


def test_an_unknown_user_is_missing(lookup):
    for user in ("u-999", "u-401", "'; drop table crm_profiles; --"):
        assert lookup.lookup(user).status == "missing"


def test_async_lookups_find_and_miss(lookup):
    async def scenario():
        try:
            return await asyncio.gather(
                lookup.alookup("u-1"), lookup.alookup("u-999"), lookup.alookup("u-3")
            )
        finally:
            await lookup.aclose()

    found, missing, third = asyncio.run(scenario())
    assert_seeded_u1(found)
    assert missing.status == "missing"
    assert third.profile["segment"] == "new"


def test_many_concurrent_async_lookups_share_a_small_pool(crm_dsn):
    crm = PostgresProfileLookup(crm_dsn, timeout_s=5.0, pool_size=2)

    async def scenario():
        try:
            return await asyncio.gather(*(crm.alookup(f"u-{n}") for n in range(1, 201)))
        finally:
            await crm.aclose()

    results = asyncio.run(scenario())
    assert [result.status for result in results] == ["ok"] * 200
    assert results[41].profile["email"] == "user42@example.com"


def test_a_closed_port_is_unavailable_within_the_budget():
    crm = PostgresProfileLookup(CLOSED_PORT_DSN, timeout_s=0.2, retries=2)
    try:
        started = time.monotonic()
        result = crm.lookup("u-1")
        elapsed_s = time.monotonic() - started
    finally:
        crm.close()
    assert (result.status, result.profile) == ("unavailable", {})
    assert result.reason == "connection"
    assert elapsed_s < 0.2 + 0.1


def test_a_closed_port_is_unavailable_within_the_budget_async():
    crm = PostgresProfileLookup(CLOSED_PORT_DSN, timeout_s=0.2, retries=2)

    async def scenario():
        started = time.monotonic()
        results = await asyncio.gather(*(crm.alookup(f"u-{n}") for n in range(20)))
        elapsed_s = time.monotonic() - started
        await crm.aclose()
        return results, elapsed_s

    results, elapsed_s = asyncio.run(scenario())
    assert {result.status for result in results} == {"unavailable"}
    assert elapsed_s < 0.2 + 0.1  # concurrently, each within its own budget


def test_a_locked_table_times_out_and_then_recovers(crm_dsn, lookup):
    assert lookup.lookup("u-1").status == "ok"  # warm pool: the statement itself must block
    fast = PostgresProfileLookup(crm_dsn, timeout_s=0.3, retries=1)
    assert wait_for(lambda: fast.lookup("u-1").status == "ok", timeout=10)
    with psycopg.connect(crm_dsn) as blocker:
        blocker.execute("LOCK TABLE crm_profiles IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        blocked = fast.lookup("u-1")
        elapsed_s = time.monotonic() - started
        blocker.rollback()
    try:
        assert blocked.status == "unavailable"
        assert blocked.reason in ("statement timeout", "connection")
        assert elapsed_s < 0.3 + 0.15
        assert wait_for(lambda: fast.lookup("u-1").status == "ok", timeout=5)
    finally:
        fast.close()


def test_from_env_builds_a_cached_lookup(crm_dsn):
    crm = build_lookup(from_env({"CRM_DSN": crm_dsn, "CRM_TIMEOUT_MS": "2000"}))
    assert isinstance(crm, CachedProfileLookup)
    try:
        first, second = crm.lookup("u-7"), crm.lookup("u-7")
        assert (first.status, first.cached) == ("ok", False)
        assert (second.status, second.cached) == ("ok", True)
        assert second.profile == first.profile
    finally:
        crm.close()


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_the_pyflink_lifecycle_async_on_a_loop_thread_then_close(crm_dsn):
    """As PyFlink runs an AsyncFunction: open() on the main thread, async_invoke on a loop in its
    own thread, the loop stopped, then close() on the main thread."""
    crm = build_lookup(from_env({"CRM_DSN": crm_dsn, "CRM_TIMEOUT_MS": "2000"}))
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()
    try:
        futures = [
            asyncio.run_coroutine_threadsafe(crm.alookup(f"u-{n % 5 + 1}"), loop) for n in range(50)
        ]
        results = [future.result(timeout=10) for future in futures]
        assert {result.status for result in results} == {"ok"}
        again = asyncio.run_coroutine_threadsafe(crm.alookup("u-1"), loop).result(timeout=10)
        assert again.cached
        assert crm.lookup("u-1").cached  # the sync path shares the cache
    finally:
        loop.call_soon_threadsafe(loop.stop)
        runner.join(timeout=5)
        loop.close()
        crm.close()  # must not hang or raise with the loop gone
        gc.collect()  # nothing left pending on the dead loop to complain about


def test_a_batch_is_one_query_with_a_result_per_user(lookup):
    users = ["u-1", "u-999", "u-2", "'; drop table crm_profiles; --"]
    results = lookup.lookup_many(users)
    assert list(results) == users
    assert_seeded_u1(results["u-1"])
    assert results["u-2"].profile["segment"] == "regular"
    assert results["u-999"].status == results[users[-1]].status == "missing"


def test_a_batch_against_a_database_that_is_down_is_unavailable_within_its_budget():
    crm = PostgresProfileLookup(CLOSED_PORT_DSN, timeout_s=0.2, retries=5)
    try:
        results = crm.lookup_many(["u-1", "u-2"], timeout_s=0.1)
    finally:
        crm.close()
    assert {(r.status, r.reason) for r in results.values()} == {("unavailable", "connection")}
