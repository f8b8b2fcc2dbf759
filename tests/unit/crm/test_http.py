"""The HTTP backend against the local profile API (loopback only, fast)."""

from __future__ import annotations

import asyncio
import time

import pytest

from moments_testing.profile_api import ProfileApiServer
from udfs.crm.http import HttpProfileLookup

TOKEN = "test-token"
PROFILES = {
    "u-1": {"user_id": "u-1", "email": "user1@example.com", "segment": "vip"},
    "a/b c": {"segment": "odd"},
}


@pytest.fixture
def api():
    with ProfileApiServer(TOKEN, PROFILES) as server:
        yield server


@pytest.fixture
def client():
    """Factory of clients (0.5 s budget, 2 retries unless told), closed when the test ends."""
    made: list[HttpProfileLookup] = []

    def make(url: str, token: str = TOKEN, **options) -> HttpProfileLookup:
        made.append(HttpProfileLookup(url, token, **{"timeout_s": 0.5, "retries": 2, **options}))
        return made[-1]

    yield make
    for lookup in made:
        lookup.close()


def test_found_profile_is_ok_without_the_key(api, client):
    result = client(api.url).lookup("u-1")
    assert result.status == "ok"
    assert result.profile == {"email": "user1@example.com", "segment": "vip"}
    assert result.latency_ms > 0


def test_user_ids_are_quoted_into_one_path_segment(api, client):
    assert client(api.url).lookup("a/b c").profile == {"segment": "odd"}


def test_unknown_user_is_missing(api, client):
    assert client(api.url).lookup("u-999").status == "missing"


def test_a_base_url_may_carry_a_path_prefix(client):
    with ProfileApiServer(TOKEN, PROFILES, prefix="/api/v2") as api:
        assert client(api.url + "/").lookup("u-1").status == "ok"


def test_a_wrong_token_is_unavailable_at_once(api, client):
    result = client(api.url, token="wrong").lookup("u-1")
    assert (result.status, result.reason) == ("unavailable", "http 401")
    assert api.requests == 1 and api.unauthorized == 1


def test_server_errors_are_retried_within_the_budget(api, client):
    api.fail_next(2, status=500)
    result = client(api.url).lookup("u-1")
    assert result.status == "ok"
    assert api.requests == 3


def test_retries_are_bounded(api, client):
    api.fail_next(10, status=503)
    result = client(api.url, retries=2).lookup("u-1")
    assert (result.status, result.reason) == ("unavailable", "http 503")
    assert api.requests == 3


def test_429_waits_for_retry_after_when_it_fits_the_budget(api, client):
    api.fail_next(1, status=429, retry_after_s=0.05)
    started = time.monotonic()
    assert client(api.url).lookup("u-1").status == "ok"
    assert time.monotonic() - started >= 0.05


def test_429_with_a_retry_after_past_the_budget_is_unavailable_now(api, client):
    api.fail_next(1, status=429, retry_after_s=30)
    result = client(api.url, timeout_s=0.2).lookup("u-1")
    assert (result.status, result.reason) == ("unavailable", "http 429")
    assert result.latency_ms < 150
    assert api.requests == 1


def test_a_slow_api_is_unavailable_within_the_timeout(api, client):
    api.delay_s = 1.0
    started = time.monotonic()
    result = client(api.url, timeout_s=0.1).lookup("u-1")
    elapsed = time.monotonic() - started
    assert (result.status, result.reason) == ("unavailable", "timeout")
    assert 0.09 <= elapsed < 0.3


def test_the_client_recovers_once_the_api_does(api, client):
    lookup = client(api.url, timeout_s=0.1)
    api.delay_s = 1.0
    assert lookup.lookup("u-1").status == "unavailable"
    api.delay_s = 0.0
    assert lookup.lookup("u-1").status == "ok"


def test_nothing_listening_is_unavailable_fast(client):
    with ProfileApiServer(TOKEN) as api:
        url = api.url
    result = client(url, timeout_s=0.2).lookup("u-1")
    assert (result.status, result.reason) == ("unavailable", "connection")
    assert result.latency_ms < 300


def test_async_lookups_run_concurrently(api, client):
    api.delay_s = 0.1
    lookup = client(api.url, max_workers=8)

    async def scenario():
        return await asyncio.gather(*(lookup.alookup("u-1") for _ in range(8)))

    started = time.monotonic()
    results = asyncio.run(scenario())
    elapsed = time.monotonic() - started

    assert [result.status for result in results] == ["ok"] * 8
    assert elapsed < 0.35  # eight 100 ms answers in parallel, not 800 ms in a row


def test_the_token_stays_out_of_repr(api, client):
    assert TOKEN not in repr(client(api.url))


def test_a_bad_base_url_is_refused():
    with pytest.raises(ValueError, match="base URL"):
        HttpProfileLookup("crm.example.com", TOKEN)
