"""Delivery benchmark: N actions (default 10,000) through `moments deliver --actions` against the
strict local Braze and Iterable servers, with injected failures and 429s. Prints figures.

    .venv/bin/python bench/deliver_bench.py [--actions 10000] [--failure-rate 0.10] [--seed 7]

Failures are per request: 50% of them 500s, 20% slow responses past the client timeout, 15%
connections dropped before the request is accepted, 15% dropped after (those two kinds of "accepted
but the client cannot know" make the duplicates). 429s come from the servers' rate limits, set
below the client's documented defaults so the client must honour them.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jobs.cli import build_parser  # noqa: E402
from jobs.deliver.config import DeliverConfig  # noqa: E402
from jobs.options import load  # noqa: E402
from schemas.action import Action, action_id  # noqa: E402
from tests.vendor_servers import BrazeServer, Faults, IterableServer  # noqa: E402
from udfs.delivery.assemble import build_deliverer  # noqa: E402
from udfs.delivery.drain import drain  # noqa: E402
from udfs.delivery.files import FileSource  # noqa: E402
from udfs.delivery.pipeline import DeliveryPipeline  # noqa: E402

# Server-side limits (requests, window seconds): far below the vendors' real ones and the
# client's documented defaults on purpose, so 429s happen and X-RateLimit-Reset is honoured.
SERVER_BRAZE_LIMITS = {"braze.users_track": (4, 1.0), "braze.messaging": (2, 1.0)}
SERVER_ITERABLE_LIMITS = {"iterable.track_bulk": (1, 1.0), "iterable.trigger_workflow": (5, 1.0)}


def make_actions(count: int, rng: random.Random) -> list[Action]:
    actions = []
    for i in range(count):
        user_id = f"u-{i % (count // 3 or 1)}"
        trigger_ts = 1763805600000 + i * 37
        roll = rng.random()
        extra: dict = {}
        if roll < 0.50:
            destinations = ["kafka", "braze"]
        elif roll < 0.80:
            destinations = ["kafka", "iterable"]
        elif roll < 0.945:
            destinations = ["kafka", "braze", "iterable"]
        elif roll < 0.995:
            destinations, extra = ["braze"], {"campaign_id": f"camp-{i % 3}"}
        else:
            destinations, extra = ["iterable"], {"workflow_id": 4242}
        rule_id = f"rule_{i % 4}"
        actions.append(
            Action(
                action_id=action_id(rule_id, user_id, trigger_ts),
                rule_id=rule_id,
                action="cart_nudge",
                user_id=user_id,
                trigger_ts=trigger_ts,
                detected_at=trigger_ts + 40,
                event_ids=[f"e-{i}"],
                destinations=destinations,
                profile={"email": f"{user_id}@example.com", "segment": "vip", "first_name": "A"},
                enrichment="ok",
                properties={"sku": f"SKU-{i % 50}", "price": 9.99},
                **extra,
            )
        )
    return actions


def faults(rate: float, seed: int, slow_s: float) -> Faults:
    return Faults(
        error_500=rate * 0.5,
        slow=rate * 0.2,
        slow_s=slow_s,
        drop_before=rate * 0.15,
        drop_after=rate * 0.15,
        seed=seed,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--actions", type=int, default=10_000)
    parser.add_argument("--failure-rate", type=float, default=0.10)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", default="1s", help="client HTTP timeout")
    parser.add_argument("--batch-size", default="500")
    options = parser.parse_args()

    rng = random.Random(options.seed)
    actions = make_actions(options.actions, rng)
    slow_s = 1.5
    braze_server = BrazeServer(
        rate_limits=SERVER_BRAZE_LIMITS, faults=faults(options.failure_rate, options.seed, slow_s)
    )
    iterable_server = IterableServer(
        rate_limits=SERVER_ITERABLE_LIMITS,
        faults=faults(options.failure_rate, options.seed + 1, slow_s),
    )
    with braze_server, iterable_server, tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "actions.jsonl"
        path.write_bytes(b"\n".join(a.to_json_bytes() for a in actions) + b"\n")
        environ = {
            "BRAZE_API_KEY": braze_server.api_key,
            "BRAZE_REST_ENDPOINT": braze_server.url,
            "ITERABLE_API_KEY": iterable_server.api_key,
            "ITERABLE_API_ENDPOINT": iterable_server.url,
        }
        args = build_parser(load_subcommands=True).parse_args(
            [
                "deliver",
                "--actions",
                str(path),
                "--batch-size",
                options.batch_size,
                "--timeout",
                options.timeout,
                "--backoff-base",
                "200ms",
                "--backoff-max",
                "5s",
                "--max-attempts",
                "10",
                "--max-rate-limited",
                "100",
            ]
        )
        config = load(DeliverConfig, args, {**os.environ, **environ})
        settings = config.delivery_settings()
        deliverer = build_deliverer(settings)
        started = time.monotonic()
        try:
            with FileSource(path, Path(tmp) / "dlq.jsonl") as source:
                summary = drain(DeliveryPipeline(deliverer), source, batch_size=config.batch_size)
        finally:
            deliverer.close()
        drain_s = time.monotonic() - started

        want_braze = {a.action_id for a in actions if "braze" in a.destinations}
        want_iterable = {a.action_id for a in actions if "iterable" in a.destinations}
        got_braze, got_iterable = braze_server.delivered_ids(), iterable_server.delivered_ids()
        figures = {
            "actions": len(actions),
            "deliveries_expected": len(want_braze) + len(want_iterable),
            "deliveries_confirmed_by_client": summary["deliveries"],
            "missing_at_braze": len(want_braze - got_braze),
            "missing_at_iterable": len(want_iterable - got_iterable),
            "dead_lettered": summary["dead_lettered_records"],
            "time_to_drain_s": round(drain_s, 2),
            "deliveries_per_s": round(summary["deliveries"] / drain_s, 1),
            "client_http": summary["http"],
            "braze_server": {
                "requests": braze_server.requests,
                "outcomes": {str(k): v for k, v in braze_server.statuses.items()},
                "duplicate_events": braze_server.duplicates(),
            },
            "iterable_server": {
                "requests": iterable_server.requests,
                "outcomes": {str(k): v for k, v in iterable_server.statuses.items()},
                "resent_events_same_id": iterable_server.duplicates(),
            },
            "server_rate_limits": {**SERVER_BRAZE_LIMITS, **SERVER_ITERABLE_LIMITS},
            "client_rate_limits": {k: str(v) for k, v in settings.rate_limits.items()},
            "failure_rate_per_request": options.failure_rate,
        }
    print(json.dumps(figures, indent=2))
    lost = figures["missing_at_braze"] + figures["missing_at_iterable"]
    print(
        f"\n{figures['deliveries_confirmed_by_client']} deliveries of {len(actions)} actions in "
        f"{figures['time_to_drain_s']}s ({figures['deliveries_per_s']}/s); lost {lost}; "
        f"retries {summary['http']['retries']} (429s {summary['http']['rate_limited']}, "
        f"5xx {summary['http']['server_errors']}, timeouts/dropped "
        f"{summary['http']['transport_errors']}); duplicates: braze "
        f"{figures['braze_server']['duplicate_events']}, iterable (same id, an update) "
        f"{figures['iterable_server']['resent_events_same_id']}"
    )
    return 0 if lost == 0 and not figures["dead_lettered"] else 1


if __name__ == "__main__":
    sys.exit(main())
