"""Each user's activity bucket ends a little later than the bucket: spread, stable, bounded."""

from __future__ import annotations

from tests.unit.engine.conftest import make_rules
from udfs.engine import Engine
from udfs.host import spread_bucket_ends
from udfs.timing import BUCKET_END_SPREAD_MS
from udfs.timing import bucket_end_spread as spread_of_buckets


def bucket_end_spread(engine: Engine) -> int:
    return spread_of_buckets(engine.activity_bucket_ms)


def bucket_end_delay(user_id: str, engine: Engine) -> int:
    """The delay the Flink operator's host gives this user's bucket ends."""
    return spread_bucket_ends(engine)(user_id)


def _engine(gap: str) -> Engine:
    return Engine(
        make_rules(
            {
                "id": "sil",
                "pattern": {"type": "silence", "start": {"event_type": "b"}, "gap": gap},
            },
            {
                "id": "cnt",
                "pattern": {
                    "type": "count",
                    "match": {"event_type": "a"},
                    "threshold": 2,
                    "within": "1m",
                },
            },
        )
    )


def test_delays_are_stable_and_spread_over_the_window():
    engine = _engine("45s")
    assert bucket_end_spread(engine) == BUCKET_END_SPREAD_MS
    delays = [bucket_end_delay(f"u-{i}", engine) for i in range(2_000)]
    assert delays == [bucket_end_delay(f"u-{i}", engine) for i in range(2_000)]
    assert all(0 <= d < BUCKET_END_SPREAD_MS for d in delays)
    # Spread, not bunched: every tenth of the window gets some users.
    assert {d * 10 // BUCKET_END_SPREAD_MS for d in delays} == set(range(10))


def test_a_short_gap_bounds_the_spread_by_the_bucket():
    engine = _engine("2s")
    assert bucket_end_spread(engine) == 2_000
    assert all(0 <= bucket_end_delay(f"u-{i}", engine) < 2_000 for i in range(500))
