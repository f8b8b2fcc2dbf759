"""ProfilePrefetcher: background lookups in batches, results cached, the budget kept, never a
raise; with a scripted backend whose calls the test holds and releases."""

from __future__ import annotations

import threading
import time

import pytest

from tests.helpers import wait_for
from tests.unit.crm.fakes import FakeClock
from udfs.crm import LookupResult
from udfs.crm.prefetch import ProfilePrefetcher

PROFILES = {"u-1": {"segment": "vip"}, "u-2": {"segment": "regular"}}


class BatchBackend:
    """`lookup_many` over PROFILES, recording each batch; `gate` holds every call until set."""

    def __init__(self, fail: Exception | None = None):
        self.batches: list[list[str]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.fail = fail
        self.closed = False

    def lookup_many(self, user_ids: list[str], timeout_s: float) -> dict[str, LookupResult]:
        self.entered.set()
        self.gate.wait()
        self.batches.append(list(user_ids))
        if self.fail is not None:
            raise self.fail
        return {
            user: LookupResult("ok", PROFILES[user])
            if user in PROFILES
            else LookupResult("missing")
            for user in user_ids
        }

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def backend():
    return BatchBackend()


def prefetcher(backend, **kwargs) -> ProfilePrefetcher:
    return ProfilePrefetcher(backend, timeout_s=kwargs.pop("timeout_s", 5.0), workers=1, **kwargs)


def test_a_requested_profile_becomes_ready_and_is_cached(backend):
    fetcher = prefetcher(backend)
    assert fetcher.ready("u-1") is None
    assert fetcher.request("u-1")
    result = wait_for(lambda: fetcher.ready("u-1"), message="u-1 looked up")
    assert (result.status, result.profile, result.cached) == ("ok", PROFILES["u-1"], True)
    assert not fetcher.request("u-1")  # known: nothing to do
    assert backend.batches == [["u-1"]]
    fetcher.close()
    assert backend.closed


def test_queued_users_go_in_one_batch_and_unknown_ones_are_cached_as_missing(backend):
    backend.gate.clear()
    fetcher = prefetcher(backend)
    fetcher.request("u-0")
    wait_for(backend.entered.is_set, message="the worker took the first user")
    for user in ("u-1", "u-2", "u-999", "u-1"):
        fetcher.request(user)
    backend.gate.set()
    wait_for(lambda: fetcher.ready("u-999"), message="the batch answered")
    assert backend.batches == [["u-0"], ["u-1", "u-2", "u-999"]]
    assert fetcher.ready("u-999").status == "missing"
    assert not fetcher.failing()
    assert not fetcher.request("u-999")
    fetcher.close()


def test_a_request_still_queued_when_its_budget_ran_out_is_unavailable_without_a_query(backend):
    clock = FakeClock()
    backend.gate.clear()
    fetcher = prefetcher(backend, timeout_s=0.2, clock=clock)
    fetcher.request("u-0")
    wait_for(backend.entered.is_set, message="the worker took the first user")
    fetcher.request("u-1")
    clock.advance(0.3)
    backend.gate.set()
    result = wait_for(lambda: fetcher.ready("u-1"), message="u-1 answered")
    assert (result.status, result.reason) == ("unavailable", "queued past budget")
    assert backend.batches == [["u-0"]]
    fetcher.close()


def test_unavailable_is_remembered_for_one_budget_then_asked_again():
    clock = FakeClock()
    backend = BatchBackend(fail=RuntimeError("bug in a backend"))
    fetcher = prefetcher(backend, timeout_s=0.2, clock=clock)
    fetcher.request("u-1")
    result = wait_for(lambda: fetcher.ready("u-1"), message="u-1 answered")
    assert result.status == "unavailable" and result.reason.startswith("internal")
    assert fetcher.failing()
    assert not fetcher.request("u-1")
    backend.gate.clear()
    assert fetcher.request("u-7")  # a probe while failing...
    wait_for(backend.entered.is_set, message="the probe is asked")
    assert not fetcher.request("u-8")  # ...and no queue behind it
    backend.gate.set()
    wait_for(lambda: fetcher.ready("u-7"), message="the probe answered")
    clock.advance(0.25)
    assert fetcher.ready("u-1") is None
    assert fetcher.request("u-1")  # the worker survived the raise and takes it again
    wait_for(lambda: backend.batches[-1] == ["u-1"], message="asked again")
    fetcher.close()


def test_one_answered_batch_does_not_end_failing_until_the_hold_passed_without_a_failure():
    clock = FakeClock()
    backend = BatchBackend(fail=RuntimeError("crm down"))
    fetcher = prefetcher(backend, timeout_s=0.5, clock=clock)  # hold: 5 budgets = 2.5 s
    fetcher.request("u-1")
    wait_for(lambda: fetcher.ready("u-1"), message="u-1 answered")
    assert fetcher.failing()
    backend.fail = None  # a lucky batch answers
    clock.advance(1.0)
    fetcher.request("u-2")
    assert wait_for(lambda: fetcher.ready("u-2"), message="u-2 answered").status == "ok"
    assert fetcher.failing(), "one answered batch 1 s after a failure"
    clock.advance(1.49)
    assert fetcher.failing()
    clock.advance(0.02)
    assert not fetcher.failing(), "2.5 s without a failed batch"
    fetcher.close()


def test_wait_answers_unavailable_when_the_crm_never_does(backend):
    backend.gate.clear()
    fetcher = prefetcher(backend)
    result = fetcher.wait("u-1", timeout_s=0.05)
    assert (result.status, result.reason) == ("unavailable", "timeout")
    backend.gate.set()
    assert fetcher.wait("u-1", timeout_s=5.0).status == "ok"
    fetcher.close()


def test_a_full_queue_answers_unavailable_at_once(backend):
    backend.gate.clear()
    fetcher = prefetcher(backend, max_queued=1)
    fetcher.request("u-0")
    wait_for(backend.entered.is_set, message="the worker took the first user")
    assert fetcher.request("u-1")
    assert not fetcher.request("u-2")
    assert fetcher.ready("u-2").reason == "overloaded"
    backend.gate.set()
    fetcher.close()


def test_with_the_cache_off_a_prefetched_profile_still_waits_for_its_action(backend):
    fetcher = prefetcher(backend, ttl_s=0)
    fetcher.request("u-1")
    result = wait_for(lambda: fetcher.ready("u-1"), message="u-1 looked up")
    assert result.status == "ok"
    assert fetcher.ready("u-1") is None  # taken once: nothing is cached
    fetcher.close()


def test_single_lookups_when_the_backend_has_no_batches():
    class Single:
        def __init__(self):
            self.calls = []

        def lookup(self, user_id):
            self.calls.append(user_id)
            return LookupResult("missing")

        def close(self):
            pass

    single = Single()
    fetcher = prefetcher(single)
    for user in ("u-1", "u-2"):
        fetcher.request(user)
    wait_for(lambda: fetcher.ready("u-2") and fetcher.ready("u-1"), message="both looked up")
    assert sorted(single.calls) == ["u-1", "u-2"]
    fetcher.close()


def test_a_lingering_worker_puts_the_requests_of_its_linger_in_one_query(backend):
    fetcher = prefetcher(backend, timeout_s=40.0, linger_s=3.0)
    fetcher.request("u-1")
    time.sleep(0.3)  # the stimulus, not a wait: requests spread over the linger
    fetcher.request("u-2")
    fetcher.request("u-999")
    wait_for(lambda: fetcher.ready("u-999"), message="the batch answered")
    assert backend.batches == [["u-1", "u-2", "u-999"]]
    fetcher.close()


def test_a_full_batch_or_a_blocked_caller_ends_the_linger(backend):
    # A linger of 10 s (a quarter of the budget): only ending it early answers in time.
    fetcher = prefetcher(backend, timeout_s=40.0, linger_s=10.0, max_batch=2)
    fetcher.request("u-1")
    fetcher.request("u-2")
    wait_for(lambda: fetcher.ready("u-2"), timeout=5, message="the full batch went at once")
    assert backend.batches == [["u-1", "u-2"]]
    fetcher.request("u-999")
    assert fetcher.wait("u-999", timeout_s=2).status == "missing"  # not `timeout`
    fetcher.close()


def test_the_linger_is_at_most_a_quarter_of_the_budget(backend):
    fetcher = prefetcher(backend, timeout_s=0.4, linger_s=60.0)
    fetcher.request("u-1")
    result = wait_for(lambda: fetcher.ready("u-1"), timeout=5, message="u-1 looked up")
    assert result.status == "ok"  # looked up within its budget, not `queued past budget`
    fetcher.close()
    assert not any(thread.is_alive() for thread in fetcher._threads)
