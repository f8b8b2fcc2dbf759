"""Generated inputs for the detection job's tests and benchmark: rules of every pattern type and
event streams with ties, boundary cases at +-1 ms, out-of-order arrival within the bound, late and
invalid records."""

from __future__ import annotations

import json
import random
from pathlib import Path

RULES_YAML = """\
rules:
  - id: cart_silence
    pattern:
      type: silence
      start: {event_type: add_to_cart}
      unless: {event_type: [checkout_started, purchase]}
      gap: 5s
    cooldown: 20s
    action: {name: cart_nudge, destinations: [kafka, braze]}
  - id: login_trouble
    pattern: {type: count, match: {event_type: login_failed}, threshold: 3, within: 2s}
    cooldown: 3s
    action: {name: login_help, destinations: [kafka, iterable]}
  - id: quick_add
    pattern:
      type: sequence
      steps: [{event_type: product_view}, {event_type: add_to_cart}]
      within: 1s
    action: {name: welcome_offer, destinations: [kafka]}
  - id: no_checkout
    pattern:
      type: absence
      start: {event_type: add_to_cart}
      missing: {event_type: checkout_started}
      within: 3s
    action: {name: exit_banner, destinations: [kafka]}
  - id: big_spender
    pattern:
      type: count
      match: {event_type: purchase, properties.amount: {gte: 100}}
      threshold: 2
      within: 10s
    action: {name: vip_offer, destinations: [kafka]}
"""

EVENT_TYPES = [
    "product_view",
    "add_to_cart",
    "checkout_started",
    "purchase",
    "login_failed",
    "page_view",
]
T0 = 1_763_805_600_000


def event(event_id: str, user_id: str, event_type: str, ts: int, **properties) -> dict:
    record = {"event_id": event_id, "user_id": user_id, "event_type": event_type, "ts": ts}
    if properties:
        record["properties"] = properties
    return record


def boundary_events(t: int) -> list[dict]:
    """Each pair of users differs by 1 ms around a window or deadline edge."""
    out = []
    # silence gap 5s: an event exactly at the deadline comes after the fire; 1 ms before moves it.
    out += [
        event("b-s1", "edge-s1", "add_to_cart", t),
        event("b-s2", "edge-s1", "page_view", t + 5000),
    ]
    out += [
        event("b-s3", "edge-s2", "add_to_cart", t),
        event("b-s4", "edge-s2", "page_view", t + 4999),
    ]
    # absence 3s: a checkout at deadline-1 disarms, at the deadline it is too late.
    out += [
        event("b-a1", "edge-a1", "add_to_cart", t),
        event("b-a2", "edge-a1", "checkout_started", t + 2999),
    ]
    out += [
        event("b-a3", "edge-a2", "add_to_cart", t),
        event("b-a4", "edge-a2", "checkout_started", t + 3000),
    ]
    # sequence within 1s: last - first < within.
    out += [
        event("b-q1", "edge-q1", "product_view", t),
        event("b-q2", "edge-q1", "add_to_cart", t + 999),
    ]
    out += [
        event("b-q3", "edge-q2", "product_view", t),
        event("b-q4", "edge-q2", "add_to_cart", t + 1000),
    ]
    # count 3 within 2s.
    out += [
        event(f"b-c{i}", "edge-c1", "login_failed", t + d) for i, d in enumerate((0, 1000, 1999))
    ]
    out += [
        event(f"b-d{i}", "edge-c2", "login_failed", t + d) for i, d in enumerate((0, 1000, 2000))
    ]
    # ties: same ts, order by event_id decides (the sequence needs the view first: "t-1" < "t-2").
    out += [
        event("t-2", "edge-tie", "add_to_cart", t + 10),
        event("t-1", "edge-tie", "product_view", t + 10),
    ]
    out += [
        event("t-4", "edge-tie2", "product_view", t + 10),
        event("t-3", "edge-tie2", "add_to_cart", t + 10),
    ]
    # cooldown: login_trouble has a 3s cooldown; the second triple falls inside it and is used up.
    out += [
        event(f"b-k{i}", "edge-cool", "login_failed", t + d)
        for i, d in enumerate((0, 10, 20, 1000, 1010, 1020, 4000, 4010, 4020))
    ]
    return out


def generate(
    users: int = 30,
    events_per_user: int = 60,
    bound_ms: int = 2_000,
    seed: int = 7,
    late: int = 5,
    invalid: int = 5,
) -> tuple[list[str], list[dict]]:
    """Lines of an events file (arrival order) and the valid events among them in that order.

    Arrival order is by ts + jitter with jitter in [0, bound]: nothing arrives more than `bound`
    after a later event, so no generated event is late except the `late` ones appended on purpose.
    """
    rng = random.Random(seed)
    events: list[dict] = []
    for u in range(users):
        ts = T0 + rng.randrange(0, 5_000)
        for i in range(events_per_user):
            ts += rng.choice((0, 0, 1, 150, 400, 900, 1_500, 2_500, 6_000))
            kind = rng.choice(EVENT_TYPES)
            props = {"amount": rng.choice((20, 100, 250))} if kind == "purchase" else {}
            events.append(event(f"u{u}-{i:03d}", f"user-{u}", kind, ts, **props))
    events += boundary_events(T0 + 1_000)
    keyed = [(e["ts"] + rng.randrange(0, bound_ms + 1), n, e) for n, e in enumerate(events)]
    arrival = [e for _, _, e in sorted(keyed, key=lambda k: (k[0], k[1]))]
    max_ts = max(e["ts"] for e in arrival)
    for i in range(late):
        arrival.append(
            event(f"late-{i}", f"user-{i}", "add_to_cart", max_ts - bound_ms - 1 - i * 100)
        )
    lines = [json.dumps(e) for e in arrival]
    bad = [
        "not json at all",
        json.dumps({"event_id": "x", "user_id": "u", "ts": 1}),
        json.dumps({"event_id": "y", "user_id": "u", "event_type": "view", "ts": "yesterday"}),
        '{"event_id": "z", "user_id": ',
        json.dumps({"event_id": 5, "user_id": "u", "event_type": "view", "ts": 1}),
    ]
    for i in range(invalid):
        lines.insert(rng.randrange(1, len(lines)), bad[i % len(bad)])
    valid = [json.loads(line) for line in lines if _is_valid(line)]
    return lines, valid


def poisoned_records(now_ms: int) -> list[tuple[str, str]]:
    """Records outside the guard rails (DESIGN.md "Event contract"), each with the part of the
    reason the decoder gives: ts in the year 9999, past now + 1h or negative, ids of 0 or 513
    bytes (multi-byte UTF-8 too), a record over 1 MiB. Each is an add_to_cart of a user of its
    own, so accepted it would arm a deadline; the year 9999 would also stall the watermark."""

    def poisoned(n: int, **fields) -> str:
        record = event(f"poison-{n}", f"poison-user-{n}", "add_to_cart", T0) | fields
        return json.dumps(record, ensure_ascii=False)

    return [
        (poisoned(1, ts=253_402_300_799_999), "is more than 1h ahead of now"),
        (poisoned(2, ts="9999-12-31T23:59:59.999Z"), "is more than 1h ahead of now"),
        (poisoned(3, ts=now_ms + 2 * 3_600_000), "is more than 1h ahead of now"),
        (poisoned(4, ts=-1), "ts must be >= 0"),
        (poisoned(5, event_id="e" * 513), "event_id: 513 bytes of UTF-8"),
        (poisoned(6, user_id=""), "user_id: String should have at least 1 character"),
        (poisoned(7, user_id="\u2603" * 170 + "abc"), "user_id: 513 bytes of UTF-8"),
        (poisoned(8, properties={"pad": "p" * (1 << 20)}), "over the 1 MiB limit"),
    ]


def _is_valid(line: str) -> bool:
    from udfs.decode import InvalidEvent, decode_event

    try:
        decode_event(line)
    except InvalidEvent:
        return False
    return True


def write_inputs(directory: Path, lines: list[str]) -> tuple[Path, Path]:
    rules = directory / "rules.yaml"
    rules.write_text(RULES_YAML)
    events = directory / "events.jsonl"
    events.write_text("\n".join(lines) + "\n")
    return rules, events
