"""`moments generate`: write a seeded, realistic event stream to JSONL or Parquet (or stdout), or
(`--scenario experiment`) a stream where a rule's arms convert at given true rates."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from jobs.cli import UsageError
from schemas.durations import parse_duration_ms
from udfs.experiment_generator import ExperimentSettings, ScenarioError, generate_experiment
from udfs.generator import GeneratorSettings, generate


def configure_parser(parser) -> None:
    defaults = GeneratorSettings()
    parser.add_argument("--out", default="-", help="E.jsonl, E.parquet or - for stdout (JSONL)")
    parser.add_argument("--users", type=int, default=defaults.users)
    parser.add_argument("--events", type=int, default=defaults.events)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--start-ts", type=int, default=defaults.start_ts, help="epoch ms")
    parser.add_argument(
        "--events-per-second",
        type=float,
        default=defaults.events_per_second,
        help="density in event time (default %(default)s)",
    )
    parser.add_argument(
        "--noise", type=float, default=defaults.noise, help="share of events no rule reads"
    )
    parser.add_argument(
        "--out-of-order", default="0ms", help="arrivals shuffled inside this bound (e.g. 2s)"
    )
    parser.add_argument(
        "--late-fraction", type=float, default=0.0, help="share of events made late on purpose"
    )
    parser.add_argument(
        "--scenario",
        choices=("stream", "experiment"),
        default="stream",
        help="stream: the realistic mix (default); experiment: each user fires --rule once and "
        "reaches its goal with the true rate of the user's arm (--events, --noise unused)",
    )
    parser.add_argument("--rules", metavar="R.yaml", help="experiment: the rules file")
    parser.add_argument(
        "--rule", metavar="ID", help="experiment: the rule (default: the file's first with a goal)"
    )
    parser.add_argument(
        "--true-rate",
        metavar="ARM=RATE,...",
        help="experiment: conversion rate per arm, e.g. control=0.10,treatment=0.15 "
        "(one number for a rule without experiment)",
    )


def run(args) -> int:
    try:
        out_of_order = (
            0 if args.out_of_order in ("0", "0ms", "0s") else parse_duration_ms(args.out_of_order)
        )
    except ValueError as error:
        raise UsageError(f"--out-of-order: {error}") from None
    if args.users < 1 or args.events < 0 or not 0 <= args.noise <= 1:
        raise UsageError("--users must be >= 1, --events >= 0 and --noise within 0..1")
    settings = GeneratorSettings(
        users=args.users,
        events=args.events,
        seed=args.seed,
        start_ts=args.start_ts,
        events_per_second=args.events_per_second,
        noise=args.noise,
        out_of_order_ms=out_of_order,
        late_fraction=args.late_fraction,
    )
    events = _experiment(args, settings) if args.scenario == "experiment" else generate(settings)
    if args.out != "-" and Path(args.out).suffix.lower() in (".parquet", ".pq"):
        _write_parquet(events, Path(args.out))
        return 0
    handle = sys.stdout if args.out == "-" else open(args.out, "w", encoding="utf-8")
    try:
        for event in events:
            handle.write(json.dumps(event, separators=(",", ":")))
            handle.write("\n")
    finally:
        if handle is not sys.stdout:
            handle.close()
    return 0


def parse_true_rates(text: str) -> dict[str | None, float]:
    """`control=0.10,a=0.15` by arm, or one number (the key None: a rule without experiment)."""
    try:
        if "=" not in text:
            return {None: float(text)}
        pairs = (item.split("=", 1) for item in text.split(",") if item.strip())
        return {arm.strip(): float(rate) for arm, rate in pairs}
    except ValueError:
        raise UsageError(f"--true-rate: expected ARM=RATE,... or a rate, got {text!r}") from None


def _experiment(args, settings: GeneratorSettings):
    from schemas.rules import load_rules

    if not args.rules or not args.true_rate:
        raise UsageError("--scenario experiment needs --rules and --true-rate")
    rules = load_rules(args.rules)
    chosen = [r for r in rules if (r.id == args.rule if args.rule else r.goal is not None)]
    if not chosen:
        wanted = f"no rule {args.rule}" if args.rule else "no rule with a goal"
        raise UsageError(f"--rules {args.rules}: {wanted}")
    experiment = ExperimentSettings(
        true_rates=parse_true_rates(args.true_rate),
        users=settings.users,
        seed=settings.seed,
        start_ts=settings.start_ts,
        out_of_order_ms=settings.out_of_order_ms,
    )
    try:
        return list(generate_experiment(chosen[0], experiment))
    except ScenarioError as error:
        raise UsageError(f"--scenario experiment: {error}") from None


def _write_parquet(events, path: Path, batch_rows: int = 100_000) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("event_id", pa.string()),
            ("user_id", pa.string()),
            ("event_type", pa.string()),
            ("ts", pa.int64()),
            ("properties", pa.string()),
            ("device", pa.string()),
        ]
    )
    with pq.ParquetWriter(path, schema) as writer:
        batch: list[dict] = []
        for event in events:
            event["properties"] = json.dumps(event["properties"], separators=(",", ":"))
            batch.append(event)
            if len(batch) == batch_rows:
                writer.write_table(pa.Table.from_pylist(batch, schema))
                batch = []
        if batch:
            writer.write_table(pa.Table.from_pylist(batch, schema))
