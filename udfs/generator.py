"""A seeded generator of realistic user event streams, for the demo, benchmarks and tests.

Users have Zipf-like activity (a few are very busy, most are quiet); each user follows a small
Markov chain (browse -> view -> add to cart -> checkout, failed logins in bursts), so every
DESIGN.md example rule has something to find. `noise` is the share of events no example rule
reads. Events arrive out of order inside `out_of_order_ms` (never late unless `late_fraction`
asks for some).
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass

NOISE_TYPES = ("page_view", "scroll", "search", "banner_seen", "app_open")

# Next event type (of those rules read) after the previous one, with weights.
_CHAIN = {
    None: (("product_view", 6), ("login_failed", 1), ("add_to_cart", 1)),
    "product_view": (("product_view", 3), ("add_to_cart", 3), (None, 2)),
    "add_to_cart": (("checkout_started", 3), ("product_view", 2), (None, 3)),
    "checkout_started": (("purchase", 3), (None, 2)),
    "purchase": ((None, 1),),
    "login_failed": (("login_failed", 5), (None, 2)),
}


@dataclass(frozen=True)
class GeneratorSettings:
    users: int = 500
    events: int = 10_000
    seed: int = 42
    start_ts: int = 1_763_805_600_000
    events_per_second: float = 1_000.0  # event-time density, not a wall-clock rate
    noise: float = 0.8
    out_of_order_ms: int = 0
    late_fraction: float = 0.0
    zipf_s: float = 1.1


def _zipf_weights(n: int, s: float) -> list[float]:
    cumulative, total = [], 0.0
    for rank in range(1, n + 1):
        total += 1.0 / rank**s
        cumulative.append(total)
    return cumulative


def generate(settings: GeneratorSettings) -> Iterator[dict]:
    """Events as dicts (the event contract), in arrival order."""
    rng = random.Random(settings.seed)
    cumulative = _zipf_weights(settings.users, settings.zipf_s)
    total = cumulative[-1]
    # Ranks are shuffled onto user ids so the busiest user is not always u-1.
    user_ids = [f"u-{i + 1}" for i in range(settings.users)]
    rng.shuffle(user_ids)
    last_type: dict[str, str | None] = {}
    mean_gap_ms = 1_000.0 / settings.events_per_second
    ts = float(settings.start_ts)
    pending: list[tuple[float, int, dict]] = []
    counter = itertools.count()
    for n in range(settings.events):
        ts += rng.expovariate(1.0 / mean_gap_ms)
        user = user_ids[bisect.bisect_left(cumulative, rng.random() * total)]
        if rng.random() < settings.noise:
            event_type = rng.choice(NOISE_TYPES)
        else:
            options = _CHAIN[last_type.get(user)]
            event_type = rng.choices([o[0] for o in options], [o[1] for o in options])[0]
            if event_type is None:
                options = _CHAIN[None]
                event_type = rng.choices([o[0] for o in options], [o[1] for o in options])[0]
            last_type[user] = event_type
        event_ts = int(ts)
        arrival = ts
        if settings.out_of_order_ms:
            arrival = ts + rng.random() * settings.out_of_order_ms
        if settings.late_fraction and rng.random() < settings.late_fraction:
            event_ts -= 2 * settings.out_of_order_ms + 1 + rng.randrange(1_000)
        properties: dict = {}
        if event_type in ("product_view", "add_to_cart"):
            properties = {"sku": f"SKU-{rng.randrange(500)}", "price": rng.randrange(5, 500)}
        elif event_type == "scroll":
            properties = {"scroll_depth": round(rng.random(), 2)}
        event = {
            "event_id": f"e-{settings.seed}-{n}",
            "user_id": user,
            "event_type": event_type,
            "ts": event_ts,
            "properties": properties,
            "device": rng.choice(("mobile", "mobile", "web", "tablet")),
        }
        heapq.heappush(pending, (arrival, next(counter), event))
        # Everything that arrives before the current event time has certainly arrived.
        while pending and pending[0][0] <= ts:
            yield heapq.heappop(pending)[2]
    while pending:
        yield heapq.heappop(pending)[2]
