import bisect
import heapq
import random

import pytest

from udfs.vendors import RateLimit, RateLimiter, RetryPolicy


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_parse_rates():
    assert RateLimit.parse("3000/3s") == RateLimit(3000, 3.0)
    assert RateLimit.parse("250000/1h") == RateLimit(250000, 3600.0)
    assert str(RateLimit.parse("10/1s")) == "10/1s"
    for bad in ("10", "0/1s", "x/1s", "10/1.5s"):
        with pytest.raises(ValueError):
            RateLimit.parse(bad)


def test_burst_up_to_the_limit_then_waits_a_full_window():
    clock = FakeClock()
    limiter = RateLimiter(RateLimit(3, 1.0), clock=clock)
    assert [limiter.reserve().wait_s for _ in range(3)] == [0, 0, 0]
    assert limiter.reserve().wait_s == pytest.approx(1.0)
    assert limiter.reserve().wait_s == pytest.approx(1.0)
    clock.now += 0.5
    assert limiter.reserve().wait_s == pytest.approx(0.5)
    assert limiter.reserve().wait_s == pytest.approx(1.5)


def test_never_more_than_limit_in_any_window():
    clock = FakeClock()
    limiter = RateLimiter(RateLimit(10, 1.0), clock=clock)
    rng = random.Random(1)
    sends = []
    for _ in range(200):
        clock.now += rng.uniform(0, 0.05)
        sends.append(clock.now + limiter.reserve().wait_s)
    sends.sort()
    for i in range(len(sends) - 10):
        assert sends[i + 10] - sends[i] >= 1.0 - 1e-9


def simulate_arrivals(limiter, clock, rng, workers: int, sends: int, gate: bool) -> list[float]:
    """`workers` threads, each booking, waiting, (with `gate`) waiting for clear_in, then sending
    a request that reaches the vendor at a random point before its answer: the arrival times."""
    ready = [(clock.now + rng.uniform(0, 0.01), worker) for worker in range(workers)]
    heapq.heapify(ready)
    arrivals: list[float] = []
    while len(arrivals) < sends:
        clock.now, worker = heapq.heappop(ready)
        slot = limiter.reserve()
        clock.now += slot.wait_s
        while gate and (wait_s := limiter.clear_in(slot)) > 0:
            clock.now += min(wait_s, 0.05)
        # Delays as uneven as a loaded host's: up to 300 ms on the way, up to 300 ms back.
        arrival = clock.now + rng.uniform(0, 0.3)
        clock.now = arrival + rng.uniform(0, 0.3)
        limiter.answered(slot)
        arrivals.append(arrival)
        heapq.heappush(ready, (clock.now, worker))
    return sorted(arrivals)


def most_in_a_window(arrivals: list[float], period_s: float) -> int:
    return max(bisect.bisect_left(arrivals, t + period_s) - i for i, t in enumerate(arrivals))


@pytest.mark.parametrize("requests", [1, 2, 5])
def test_no_more_than_the_limit_arrives_in_any_window_however_uneven_the_way(requests):
    # The vendor counts arrivals, which the sender does not see: a send waits until the answers
    # to those `requests` before it are a period old, so arrivals keep the limit in every window.
    # Spacing the starts alone (no gate) lets uneven transit crowd a window.
    rng = random.Random(requests)
    most = {}
    for gate in (True, False):
        clock = FakeClock()
        limiter = RateLimiter(RateLimit(requests, 1.0), clock=clock)
        arrivals = simulate_arrivals(limiter, clock, rng, workers=4, sends=300, gate=gate)
        most[gate] = most_in_a_window(arrivals, 1.0)
    assert most[True] <= requests < most[False]


def test_a_send_never_answered_holds_back_for_the_client_timeout():
    clock = FakeClock()
    limiter = RateLimiter(RateLimit(1, 1.0), clock=clock, in_flight_s=3.0)
    first = limiter.reserve()
    second = limiter.reserve()
    assert limiter.clear_in(first) == 0
    assert limiter.clear_in(second) == pytest.approx(4.0)  # its start + 3 s, then a period
    clock.now += 0.5
    limiter.answered(first)
    assert limiter.clear_in(second) == pytest.approx(1.0)


def test_pause_holds_everyone_back():
    clock = FakeClock()
    limiter = RateLimiter(RateLimit(1000, 1.0), clock=clock)
    limiter.pause(5.0)
    assert limiter.reserve().wait_s == pytest.approx(5.0)
    assert limiter.paused_for() == pytest.approx(5.0)
    clock.now += 5
    assert limiter.reserve().wait_s == 0 and limiter.paused_for() == 0


@pytest.mark.parametrize("retry", range(1, 12))
def test_backoff_bounds(retry):
    policy = RetryPolicy(base_delay_s=0.5, max_delay_s=8.0)
    cap = min(8.0, 0.5 * 2 ** (retry - 1))
    rng = random.Random(retry)
    for _ in range(200):
        assert cap / 2 <= policy.backoff_s(retry, rng) <= cap


def test_backoff_grows_then_caps():
    policy = RetryPolicy(base_delay_s=1.0, max_delay_s=4.0)
    rng = random.Random(0)
    means = [sum(policy.backoff_s(n, rng) for _ in range(500)) / 500 for n in (1, 2, 3, 6)]
    assert means[0] < means[1] < means[2] == pytest.approx(means[3], rel=0.1)


def test_policy_validation():
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(base_delay_s=2, max_delay_s=1)
