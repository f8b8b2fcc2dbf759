"""Rate limits shared by every replica: one schedule row per vendor endpoint in PostgreSQL, on the
database's clock. Each send books the next free slot, `period * (1 + headroom) / requests` after
the previous one, whichever replica makes it; a 429 seen by any replica pauses them all.

Evenly spaced slots hold the limit in every window of the period, wherever the vendor's windows
start; the headroom absorbs how unevenly requests arrive (network, a busy host). Partitions moving
between replicas change nothing here, so a rebalance cannot exceed the limit.
"""

from __future__ import annotations

from udfs.vendors.ratelimit import RateLimit

ENSURE = """
INSERT INTO moments_delivery_rate (endpoint, next_free, paused_until)
VALUES (%(endpoint)s, clock_timestamp(), to_timestamp(0)) ON CONFLICT (endpoint) DO NOTHING
"""

# The slot booked starts at the later of now, the pause and the previous booking's end.
RESERVE = """
WITH now AS (SELECT clock_timestamp() AS t)
UPDATE moments_delivery_rate r
SET next_free = greatest(r.next_free, now.t, r.paused_until) + make_interval(secs => %(gap)s)
FROM now
WHERE r.endpoint = %(endpoint)s
RETURNING extract(epoch FROM r.next_free - now.t)::float8 - %(gap)s
"""

PAUSE = """
UPDATE moments_delivery_rate
SET paused_until = greatest(paused_until, clock_timestamp() + make_interval(secs => %(s)s))
WHERE endpoint = %(endpoint)s
"""

PAUSED_FOR = """
SELECT greatest(0, extract(epoch FROM paused_until - clock_timestamp()))::float8
FROM moments_delivery_rate WHERE endpoint = %(endpoint)s
"""


class SharedRateLimiter:
    """The `RateLimiter` interface (`reserve`, `pause`, `paused_for`) on the shared schedule."""

    def __init__(self, pool, endpoint: str, limit: RateLimit, headroom: float = 0.1):
        if headroom < 0:
            raise ValueError("headroom must be >= 0")
        self.pool, self.endpoint, self.limit = pool, endpoint, limit
        self.gap_s = limit.period_s * (1 + headroom) / limit.requests
        # Half the headroom may go to a late wake-up; the other half is for the way there.
        self.late_s = limit.period_s * headroom / 2
        with self.pool.connection() as conn:
            conn.execute(ENSURE, {"endpoint": endpoint})

    def reserve(self) -> float:
        """Book one send; the seconds to wait before making it."""
        with self.pool.connection() as conn:
            (wait_s,) = conn.execute(
                RESERVE, {"endpoint": self.endpoint, "gap": self.gap_s}
            ).fetchone()
        return max(0.0, wait_s)

    def pause(self, seconds: float) -> None:
        with self.pool.connection() as conn:
            conn.execute(PAUSE, {"endpoint": self.endpoint, "s": max(0.0, seconds)})

    def paused_for(self) -> float:
        with self.pool.connection() as conn:
            row = conn.execute(PAUSED_FOR, {"endpoint": self.endpoint}).fetchone()
        return float(row[0]) if row else 0.0
