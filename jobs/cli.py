"""The `moments` command line: one parser, one subcommand per job or tool.

Each subcommand lives in its own module exposing `configure_parser(parser)` and `run(args) -> int`;
modules are imported lazily so `moments --help` stays fast and works without a JVM.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from importlib.metadata import PackageNotFoundError, version

from schemas.errors import UserError

SUBCOMMANDS = {
    "validate": ("jobs.validate", "check a rules file and print one line per rule"),
    "schema": ("jobs.schema", "print the JSON Schema of an event, the rules file or an action"),
    "backtest": ("jobs.backtest", "replay an events file (JSONL or Parquet) through the rules"),
    "generate": ("jobs.generate", "write a seeded, realistic event stream (JSONL or Parquet)"),
    "run": ("jobs.detect", "run the PyFlink detection job (Kafka or file in, actions out)"),
    "deliver": ("jobs.deliver.cli", "deliver actions to Braze / Iterable (Kafka topic or file)"),
    "redrive": ("jobs.deliver.redrive", "re-send delivery dead letters, skipping accepted ones"),
    "report": ("jobs.report.cli", "conversion and lift per rule and arm, from outcome records"),
    "crm": ("jobs.crm_load", "crm load: put a CRM snapshot file into a PostgreSQL table"),
    "rules": ("jobs.rules_cli", "rules publish|list: live rule versions on the rules topic"),
}


class UsageError(UserError):
    """A flag combination or value a subcommand refuses (a `UserError`: one line, exit code 2)."""


def _version() -> str:
    try:
        return version("micro-moments")
    except PackageNotFoundError:
        return "0+unknown"


def build_parser(load_subcommands: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="moments",
        description="micro-moments: real-time behavioural triggers on Apache Flink.",
    )
    parser.add_argument("--version", action="version", version=f"moments {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(_module=module_name)
        if load_subcommands:
            module = importlib.import_module(module_name)
            module.configure_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Only the chosen subcommand's module is imported: the others may pull in PyFlink.
    chosen = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(load_subcommands=False)
    if chosen in SUBCOMMANDS:
        sub_action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        module = importlib.import_module(SUBCOMMANDS[chosen][0])
        module.configure_parser(sub_action.choices[chosen])
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    module = importlib.import_module(args._module)
    try:
        return int(module.run(args) or 0)
    except UserError as exc:
        # Every mistake a user can fix, from any layer: one line, no traceback.
        print(f"moments {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
