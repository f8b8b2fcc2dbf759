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
    assert [limiter.reserve() for _ in range(3)] == [0, 0, 0]
    assert limiter.reserve() == pytest.approx(1.0)
    assert limiter.reserve() == pytest.approx(1.0)
    clock.now += 0.5
    assert limiter.reserve() == pytest.approx(0.5)
    assert limiter.reserve() == pytest.approx(1.5)


def test_never_more_than_limit_in_any_window():
    clock = FakeClock()
    limiter = RateLimiter(RateLimit(10, 1.0), clock=clock)
    rng = random.Random(1)
    sends = []
    for _ in range(200):
        clock.now += rng.uniform(0, 0.05)
        sends.append(clock.now + limiter.reserve())
    sends.sort()
    for i in range(len(sends) - 10):
        assert sends[i + 10] - sends[i] >= 1.0 - 1e-9


def test_pause_holds_everyone_back():
    clock = FakeClock()
    limiter = RateLimiter(RateLimit(1000, 1.0), clock=clock)
    limiter.pause(5.0)
    assert limiter.reserve() == pytest.approx(5.0)
    assert limiter.paused_for() == pytest.approx(5.0)
    clock.now += 5
    assert limiter.reserve() == 0 and limiter.paused_for() == 0


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
