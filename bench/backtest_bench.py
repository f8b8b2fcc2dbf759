"""Benchmark of `moments backtest`: events/s and peak RSS on a generated stream (default 1M events).

    .venv/bin/python bench/backtest_bench.py [--events 1000000] [--users 100000] [--format jsonl]

Generates the input once into a temporary folder, then runs the backtest in a child process so
its peak RSS (ru_maxrss of the child) is the backtest's alone. Prints a JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--format", choices=("jsonl", "parquet"), default="jsonl")
    parser.add_argument("--rules", default=str(ROOT / "examples" / "rules.yaml"))
    args = parser.parse_args()
    moments = [sys.executable, "-m", "jobs.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        events = Path(tmp) / f"events.{args.format}"
        subprocess.run(
            moments
            + [
                "generate",
                "--users",
                str(args.users),
                "--events",
                str(args.events),
                "--out-of-order",
                "2s",
                "--out",
                str(events),
            ],
            check=True,
            cwd=ROOT,
        )
        started = time.perf_counter()
        result = subprocess.run(
            moments
            + [
                "backtest",
                "--rules",
                args.rules,
                "--events",
                str(events),
                "--out",
                str(Path(tmp) / "actions.jsonl"),
                "--progress",
                "off",
            ],
            check=True,
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        elapsed = time.perf_counter() - started
        peak_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        actions = sum(1 for _ in open(Path(tmp) / "actions.jsonl"))
    figures = {
        "events": args.events,
        "users": args.users,
        "format": args.format,
        "seconds": round(elapsed, 2),
        "events_per_s": round(args.events / elapsed),
        "peak_rss_mb": round(peak_rss_mb, 1),
        "actions": actions,
    }
    print(result.stdout, file=sys.stderr)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
