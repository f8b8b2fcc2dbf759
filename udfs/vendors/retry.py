"""Bounded retries with exponential backoff and jitter."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """`max_attempts` bounds sends of a request that fail with 5xx/timeouts/dropped connections;
    429s have their own budget (`max_rate_limited`) since waiting out a rate limit is expected work.
    """

    max_attempts: int = 6
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    max_rate_limited: int = 20

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_delay_s < 0 or self.max_delay_s < self.base_delay_s:
            raise ValueError("need 0 <= base_delay_s <= max_delay_s")
        if self.max_rate_limited < 0:
            raise ValueError("max_rate_limited must be >= 0")

    def backoff_s(self, retry_number: int, rng: random.Random | None = None) -> float:
        """Delay before retry `retry_number` (1 = first retry): "equal jitter", uniform in
        [cap/2, cap] with cap = min(max_delay, base * 2**(n-1)), so retries spread out but never
        come back immediately."""
        if retry_number < 1:
            raise ValueError("retry_number starts at 1")
        cap = min(self.max_delay_s, self.base_delay_s * (2 ** min(retry_number - 1, 32)))
        return cap / 2 + (rng or random).uniform(0, cap / 2)
