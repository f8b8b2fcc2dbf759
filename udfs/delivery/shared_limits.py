"""Rate limits shared by every replica: one schedule row per vendor endpoint in PostgreSQL, on the
database's clock, and a row per recent send. Each send books the next free slot, `period * (1 +
headroom) / requests` after the previous one, whichever replica makes it; it then waits until the
sends booked `requests` or more before it were answered a period ago (RateLimiter's rule, which
holds however unevenly requests travel); a 429 seen by any replica pauses them all.

A replica killed mid-send leaves its send unanswered: it counts as answered at its start plus the
client's timeout. Partitions moving between replicas change nothing here, so a rebalance cannot
exceed the limit.
"""

from __future__ import annotations

from udfs.vendors.ratelimit import DEFAULT_IN_FLIGHT_S, RateLimit, Slot

ENSURE = """
INSERT INTO moments_delivery_rate (endpoint, next_free, paused_until)
VALUES (%(endpoint)s, clock_timestamp(), to_timestamp(0)) ON CONFLICT (endpoint) DO NOTHING
"""

# The slot booked starts at the later of now, the pause and the previous booking's end; sends a
# period past their answer are forgotten (they hold back no later send).
RESERVE = """
WITH now AS (SELECT clock_timestamp() AS t),
booked AS (
    UPDATE moments_delivery_rate r
    SET next_free = greatest(r.next_free, now.t, r.paused_until) + make_interval(secs => %(gap)s),
        last_seq = r.last_seq + 1
    FROM now
    WHERE r.endpoint = %(endpoint)s
    RETURNING r.last_seq AS seq, r.next_free - make_interval(secs => %(gap)s) AS start, now.t
),
sent AS (
    INSERT INTO moments_delivery_sends (endpoint, seq, started)
    SELECT %(endpoint)s, seq, start FROM booked
),
forgotten AS (
    DELETE FROM moments_delivery_sends
    WHERE endpoint = %(endpoint)s
      AND coalesce(answered, started + make_interval(secs => %(flight)s))
          + make_interval(secs => %(period)s) < (SELECT t FROM now)
)
SELECT seq, extract(epoch FROM start - t)::float8 FROM booked
"""

CLEAR_IN = """
SELECT greatest(0, extract(epoch FROM
    max(coalesce(answered, started + make_interval(secs => %(flight)s)))
    + make_interval(secs => %(period)s) - clock_timestamp()))::float8
FROM moments_delivery_sends
WHERE endpoint = %(endpoint)s AND seq <= %(seq)s - %(requests)s
"""

ANSWERED = """
UPDATE moments_delivery_sends SET answered = clock_timestamp()
WHERE endpoint = %(endpoint)s AND seq = %(seq)s AND answered IS NULL
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
    """The `RateLimiter` interface (`reserve`, `clear_in`, `answered`, `pause`, `paused_for`) on
    the shared schedule."""

    def __init__(
        self,
        pool,
        endpoint: str,
        limit: RateLimit,
        headroom: float = 0.1,
        in_flight_s: float = DEFAULT_IN_FLIGHT_S,
    ):
        if headroom < 0:
            raise ValueError("headroom must be >= 0")
        self.pool, self.endpoint, self.limit = pool, endpoint, limit
        self.gap_s = limit.period_s * (1 + headroom) / limit.requests
        # Half the headroom may go to a late wake-up; the other half is for the way there.
        self.late_s = limit.period_s * headroom / 2
        self._params = {
            "endpoint": endpoint,
            "period": limit.period_s,
            "requests": limit.requests,
            "flight": in_flight_s,
        }
        with self.pool.connection() as conn:
            conn.execute(ENSURE, {"endpoint": endpoint})

    def reserve(self) -> Slot:
        """Book one send: its slot, with the seconds to wait for it."""
        seq, wait_s = self._one(RESERVE, gap=self.gap_s)
        return Slot(seq, max(0.0, wait_s))

    def clear_in(self, slot: Slot) -> float:
        (wait_s,) = self._one(CLEAR_IN, seq=slot.seq)
        return float(wait_s)

    def answered(self, slot: Slot) -> None:
        with self.pool.connection() as conn:
            conn.execute(ANSWERED, {**self._params, "seq": slot.seq})

    def pause(self, seconds: float) -> None:
        with self.pool.connection() as conn:
            conn.execute(PAUSE, {"endpoint": self.endpoint, "s": max(0.0, seconds)})

    def paused_for(self) -> float:
        with self.pool.connection() as conn:
            row = conn.execute(PAUSED_FOR, {"endpoint": self.endpoint}).fetchone()
        return float(row[0]) if row else 0.0

    def _one(self, query: str, **params) -> tuple:
        with self.pool.connection() as conn:
            return conn.execute(query, {**self._params, **params}).fetchone()
