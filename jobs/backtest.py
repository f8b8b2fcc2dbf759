"""`moments backtest`: replay an events file (JSONL or Parquet) through the rules, offline.

Same engine as the Flink job; the watermark is `max_ts_seen - bound`, advanced after every event,
and the end of the input moves event time to +infinity so armed deadlines fire.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from jobs.cli import UsageError
from schemas.durations import parse_duration_ms
from schemas.rules import RuleFileError, load_rules
from schemas.rules_record import effective_schedule, load_rules_history
from udfs.decode import InvalidEvent, dead_letter_json, decode_event, validate_event
from udfs.engine import Engine
from udfs.eventfiles import EventFile
from udfs.replay import Replay
from udfs.rules_history import RulesHistory


def configure_parser(parser) -> None:
    rules = parser.add_mutually_exclusive_group(required=True)
    rules.add_argument("--rules", metavar="R.yaml", help="rules file")
    rules.add_argument(
        "--rules-history",
        metavar="H.jsonl",
        help="live rules: one rules record per line, in publication order, each version in force "
        "from its effective_from (only the first may be null: from the start)",
    )
    parser.add_argument(
        "--events", required=True, metavar="E.jsonl|E.parquet", help="events, in arrival order"
    )
    parser.add_argument("--out", required=True, metavar="A.jsonl", help="actions written here")
    parser.add_argument(
        "--max-out-of-orderness",
        default="2s",
        metavar="DURATION",
        help="watermark bound: the watermark is max ts seen minus this (default 2s; 0ms allowed)",
    )
    parser.add_argument(
        "--max-future",
        default="1h",
        metavar="DURATION",
        help="guard rail: an event whose ts is more than this after wall-clock now is "
        "dead-lettered (default 1h; 'off' for synthetic data in the future)",
    )
    parser.add_argument(
        "--late-out", metavar="L.jsonl", help="write late events here (default: only counted)"
    )
    parser.add_argument(
        "--suppressed-out",
        metavar="S.jsonl",
        help="actions suppressed by the campaign layer (control, audience, caps, quiet hours), "
        "each with its reason (default: only counted)",
    )
    parser.add_argument(
        "--outcomes-out",
        metavar="O.jsonl",
        help="one outcome per detection of a rule with a goal (default: only counted)",
    )
    parser.add_argument(
        "--profiles",
        metavar="P.jsonl",
        help='a CRM snapshot, one {"user_id": ..., <fields>} per line: actions are enriched '
        "from it as the job enriches them from the CRM (default: enrichment skipped)",
    )
    parser.add_argument(
        "--dlq-out",
        metavar="D.jsonl",
        help="invalid records with the reason (default: next to --out as <out>.dlq.jsonl)",
    )
    parser.add_argument(
        "--progress",
        choices=("auto", "on", "off"),
        default="auto",
        help="progress bar on stderr (auto: when stderr is a terminal)",
    )


def _max_future_ms(text: str) -> int | None:
    from jobs.options import duration_ms

    try:
        return duration_ms(text, off=True)
    except ValueError as error:
        raise UsageError(f"--max-future: {error}") from None


def _bound_ms(text: str) -> int:
    if text.strip() in ("0", "0ms", "0s"):
        return 0
    try:
        return parse_duration_ms(text)
    except ValueError as error:
        raise UsageError(f"--max-out-of-orderness: {error}") from None


class _Progress:
    def __init__(self, enabled: bool, source: EventFile):
        self.enabled, self.source = enabled, source
        self.next_draw = 0.0

    def tick(self, read: int) -> None:
        now = time.monotonic()
        if self.enabled and now >= self.next_draw:
            self.next_draw = now + 0.25
            fraction = self.source.progress()
            bar = "#" * int(fraction * 30)
            sys.stderr.write(f"\r[{bar:<30}] {fraction:6.1%} {read:>12,} events")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            self.tick_final()

    def tick_final(self) -> None:
        self.next_draw = 0.0
        sys.stderr.write("\r" + " " * 64 + "\r")
        sys.stderr.flush()


def run(args) -> int:
    try:
        engine = _engine(args)
    except RuleFileError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        return 2
    bound_ms = _bound_ms(args.max_out_of_orderness)
    max_future_ms = _max_future_ms(args.max_future)
    try:
        source = EventFile(args.events)
    except FileNotFoundError as error:
        raise UsageError(str(error)) from None
    enrich = _snapshot_enrichment(args.profiles)
    out_path = Path(args.out)
    dlq_path = Path(args.dlq_out) if args.dlq_out else out_path.with_suffix(".dlq.jsonl")
    show_progress = args.progress == "on" or (args.progress == "auto" and sys.stderr.isatty())
    progress = _Progress(show_progress, source)

    started = time.monotonic()
    with (
        open(out_path, "w", encoding="utf-8") as out,
        open(dlq_path, "w", encoding="utf-8") as dlq,
        open(args.late_out, "w", encoding="utf-8") if args.late_out else _Null() as late_out,
        _jsonl(args.suppressed_out) as suppressed_out,
        _jsonl(args.outcomes_out) as outcomes_out,
    ):
        current_raw: list = [b""]

        def write_action(action) -> None:
            out.write(action.model_dump_json(exclude_none=True))
            out.write("\n")

        def write_late(event) -> None:
            raw = current_raw[0]
            if isinstance(raw, dict):
                late_out.write(event.model_dump_json())
            else:
                late_out.write(raw.decode("utf-8", errors="backslashreplace"))
            late_out.write("\n")

        replay = Replay(
            engine,
            bound_ms,
            on_action=write_action,
            on_late=write_late,
            on_suppressed=suppressed_out.write_model,
            on_outcome=outcomes_out.write_model,
            enrich=enrich,
        )
        _replay_records(replay, source, max_future_ms, dlq, current_raw, progress)
        replay.finish()
        progress.close()
    elapsed = time.monotonic() - started
    _print_summary(replay.counts, elapsed, out_path, dlq_path, args.late_out)
    return 0


def _engine(args):
    """The rules file's Engine, or with --rules-history the versions' RulesHistory."""
    if args.rules_history is None:
        return Engine(load_rules(args.rules))
    records = load_rules_history(args.rules_history)
    return RulesHistory(effective_schedule(records, args.rules_history))


def _replay_records(replay, source, max_future_ms, dlq, current_raw: list, progress) -> None:
    """Every record of the source through the replay; invalid ones dead-lettered."""
    parquet = source.is_parquet
    for offset, record in source.records():
        current_raw[0] = record
        try:
            event = _read_event(record, parquet, max_future_ms)
        except InvalidEvent as error:
            replay.count_invalid()
            raw = json.dumps(record, default=str) if parquet else record
            where = {"source": str(source.path), "offset": offset}
            dlq.write(dead_letter_json(raw, error.reason, **where))
            dlq.write("\n")
            continue
        replay.push(event)
        if progress.enabled and replay.counts.read % 4096 == 0:
            progress.tick(replay.counts.read)


def _read_event(record, parquet: bool, max_future_ms: int | None):
    """A record by the contract; now is wall-clock time, read per record (the guard rails)."""
    if parquet:
        return validate_event(record, max_future_ms=max_future_ms)
    return decode_event(record, max_future_ms=max_future_ms)


def _snapshot_enrichment(path: str | None):
    """Actions enriched from a profiles snapshot, as the job enriches them from the CRM."""
    if path is None:
        return None
    from udfs.crm.file import load_profiles
    from udfs.enrich import enrich

    profiles = load_profiles(path)
    return lambda action: enrich(action, profiles.lookup(action.user_id))


def _jsonl(path: str | None):
    return _JsonLines(path) if path else _Null()


class _JsonLines:
    def __init__(self, path: str):
        self.file = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed in __exit__

    def write_model(self, model) -> None:
        self.file.write(model.to_json_bytes().decode())
        self.file.write("\n")

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.file.close()


class _Null:
    def write(self, _text: str) -> None:
        pass

    def write_model(self, _model) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None


def _print_summary(counts, elapsed: float, out_path, dlq_path, late_path) -> None:
    rows = [
        ("events read", counts.read),
        ("  processed", counts.processed),
        ("  invalid (dead-lettered)", counts.invalid),
        ("  late", counts.late),
    ]
    total_actions = sum(counts.actions_per_rule.values())
    rows.append(("actions", total_actions))
    rows.extend((f"  {rule_id}", n) for rule_id, n in counts.actions_per_rule.items())
    if counts.fates:
        rows.append(("fates (detected = sent + deferred + suppressed)", sum(counts.fates.values())))
        rows.extend((f"  {fate}", n) for fate, n in sorted(counts.fates.items()))
    if counts.outcomes:
        rows.append(("outcomes", counts.outcomes))
        rows.append(("  converted", counts.converted))
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value:>12,}")
    rate = counts.read / elapsed if elapsed > 0 else 0.0
    print(f"{'elapsed':<{width}}  {elapsed:>11.2f}s  ({rate:,.0f} events/s)")
    print(
        f"actions -> {out_path}; invalid -> {dlq_path}"
        + (f"; late -> {late_path}" if late_path else "")
    )
