"""Lookups per second of the PostgreSQL CRM backend: sync vs async, uncached vs cached.

    .venv/bin/python bench/crm_bench.py [--dsn DSN] [--lookups 5000] [--concurrency 64]

DSN: --dsn, else CRM_DSN, else the local database of deploy/local/postgres.sh. Users are drawn from
u-1..u-500 (a fifth unknown, so `missing` is exercised too); the cached runs are warmed first, so
they measure hits.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jobs.settings import ENV_CRM_DSN, LOCAL_CRM_DSN  # noqa: E402
from udfs.crm import CachedProfileLookup, LookupResult, ProfileLookup  # noqa: E402
from udfs.crm.postgres import PostgresProfileLookup  # noqa: E402


def users(count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return [f"u-{rng.randint(1, 500)}" for _ in range(count)]


def report(name: str, results: list[LookupResult], elapsed_s: float) -> None:
    statuses = Counter(result.status for result in results)
    latencies = sorted(result.latency_ms for result in results)
    p50 = statistics.median(latencies)
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(
        f"{name:<34} {len(results) / elapsed_s:>10,.0f} lookups/s   "
        f"p50 {p50:6.3f} ms  p99 {p99:6.3f} ms   {dict(statuses)}"
    )


def run_sync(lookup: ProfileLookup, ids: list[str]) -> tuple[list[LookupResult], float]:
    started = time.perf_counter()
    results = [lookup.lookup(user_id) for user_id in ids]
    return results, time.perf_counter() - started


def run_async(
    lookup: ProfileLookup, ids: list[str], concurrency: int
) -> tuple[list[LookupResult], float]:
    async def scenario() -> list[LookupResult]:
        gate = asyncio.Semaphore(concurrency)

        async def one(user_id: str) -> LookupResult:
            async with gate:
                return await lookup.alookup(user_id)

        return await asyncio.gather(*(one(user_id) for user_id in ids))

    started = time.perf_counter()
    results = asyncio.run(scenario())
    return results, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=os.environ.get(ENV_CRM_DSN, LOCAL_CRM_DSN))
    parser.add_argument("--lookups", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--pool-size", type=int, default=4)
    args = parser.parse_args()
    ids = users(args.lookups)

    backend = PostgresProfileLookup(args.dsn, timeout_s=2.0, pool_size=args.pool_size)
    try:
        warm = backend.lookup("u-1")
        if warm.status != "ok":
            sys.exit(f"crm_bench: the database does not answer ({warm.reason})")
        run_async(backend, ids[:200], args.concurrency)  # opens the async pool
        print(
            f"{args.lookups} lookups, pool_size={args.pool_size}, "
            f"async concurrency={args.concurrency}"
        )
        report("sync, uncached", *run_sync(backend, ids))
        report("async, uncached", *run_async(backend, ids, args.concurrency))
        report("async, uncached, concurrency 1", *run_async(backend, ids, 1))

        cached = CachedProfileLookup(backend, ttl_s=300, max_entries=100_000)
        run_sync(cached, [f"u-{n}" for n in range(1, 501)])  # warm: every user cached
        report("sync, cached (hits)", *run_sync(cached, ids))
        report("async, cached (hits)", *run_async(cached, ids, args.concurrency))
    finally:
        backend.close()


if __name__ == "__main__":
    main()
