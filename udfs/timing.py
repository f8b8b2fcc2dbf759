"""Timer policy the Python operator and the JVM activity filter share: the per-user delay of
activity bucket ends and the grid of processing-time timers. The JVM side has the same two
functions (ActivityFilter.bucketEndDelay, ActivityFilter.roundUp), tested against these.
"""

from __future__ import annotations

import zlib

# Activity buckets are aligned to the epoch, so every user with activity in a bucket would have
# a timer at its end: thousands of Python callbacks in one burst that held up every other event
# for hundreds of ms (seen in the live benchmark at each bucket end). Each user's bucket-end
# wakeup is put off by a stable per-user delay below this (and below the bucket's length);
# dropping a bucket later changes no match (Engine.wakeup).
BUCKET_END_SPREAD_MS = 10_000

# Processing-time timers go on this grid: a busy user registers few distinct ones.
TIMER_GRID_MS = 100


def bucket_end_spread(bucket_ms: int) -> int:
    """The range of per-user bucket-end delays for buckets of `bucket_ms`."""
    return min(BUCKET_END_SPREAD_MS, bucket_ms)


def bucket_end_delay(user_id: str, spread_ms: int) -> int:
    """This user's delay of bucket ends: CRC-32 of the UTF-8 user id, stable, in [0, spread_ms)."""
    return zlib.crc32(user_id.encode()) % spread_ms


def round_up(ms: int) -> int:
    """The next step of the processing-time grid strictly after `ms`."""
    return ms - ms % TIMER_GRID_MS + TIMER_GRID_MS
