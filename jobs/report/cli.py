"""`moments report`: outcome records (a file or the outcomes topic) summarised per rule and arm,
as a text table on stdout, and optionally an HTML page with charts and a JSON summary."""

from __future__ import annotations

import json
from pathlib import Path

from jobs.cli import UsageError
from jobs.report import inputs
from jobs.report.stats import dedupe, summarise
from jobs.report.table import format_table
from jobs.settings import OUTCOMES_TOPIC


def configure_parser(parser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--outcomes", metavar="O.jsonl", help="outcome records (moments backtest --outcomes-out)"
    )
    source.add_argument(
        "--bootstrap-servers",
        metavar="HOST:PORT",
        help="read the outcomes topic from its beginning to its end offsets at start",
    )
    parser.add_argument(
        "--topic", default=OUTCOMES_TOPIC, help="outcomes topic (default %(default)s)"
    )
    parser.add_argument(
        "--html", metavar="FILE", help="also write a self-contained page with charts"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the summary as JSON")


def run(args) -> int:
    if args.outcomes is not None:
        source = args.outcomes
        records = inputs.read_file(args.outcomes)
    else:
        source = f"topic {args.topic}"
        records = inputs.read_topic(args.bootstrap_servers, args.topic)
    outcomes, repeats = dedupe(records)
    summaries = summarise(outcomes)
    print(format_table(summaries))
    if repeats:
        print(f"\n{repeats:,} repeated outcome records (same outcome_id) counted once")
    if args.html:
        from jobs.report.page import render_html

        _write(args.html, render_html(summaries, source, repeats), "--html")
    if args.json:
        document = {
            "source": source,
            "outcomes": len(outcomes),
            "repeats": repeats,
            "arms": [s.to_dict() for s in summaries],
        }
        _write(args.json, json.dumps(document, indent=2) + "\n", "--json")
    return 0


def _write(path: str, text: str, flag: str) -> None:
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as error:
        raise UsageError(f"{flag} {path}: {error.strerror or error}") from None
