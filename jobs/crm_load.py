"""`moments crm load --profiles FILE.jsonl`: put a CRM snapshot into a PostgreSQL table of its own,
so the Kafka job against PostgreSQL reads exactly the profiles `--profiles` gives the backtest and
the file job (udfs/crm/snapshot.py says how the columns are typed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pydantic import SecretStr, field_validator

from jobs.options import Options, add_arguments, environment_help, load, option
from udfs.crm.base import describe_error
from udfs.crm.factory import _dsn_location


class CrmLoadConfig(Options):
    """What `moments crm load` reads from flags and environment, validated at start-up."""

    profiles: Path = option(
        ..., 'the snapshot: JSONL, one {"user_id": ..., <profile fields>} per line', metavar="FILE"
    )
    table: str = option(
        "crm_profiles",
        "the table to create (default crm_profiles); the job reads it with CRM_TABLE",
        env="CRM_TABLE",
        pattern=r"^[A-Za-z_]\w{0,62}(\.[A-Za-z_]\w{0,62})?$",
    )
    replace: bool = option(
        False, "drop the table first if it exists (its rows are lost)", flag="--replace"
    )
    dsn: SecretStr | None = option(
        None,
        "the CRM database (a libpq URL, e.g. postgresql://moments@127.0.0.1:55432/crm)",
        env="CRM_DSN",
        secret=True,
    )

    @field_validator("profiles")
    @classmethod
    def _existing(cls, path: Path) -> Path:
        if not path.is_file():
            raise ValueError(f"{path}: no such file")
        return path

    @field_validator("dsn")
    @classmethod
    def _given(cls, dsn: SecretStr | None) -> SecretStr:
        if dsn is None or not dsn.get_secret_value().strip():
            raise ValueError("set CRM_DSN or CRM_DSN_FILE to the CRM database")
        return dsn


def configure_parser(parser: argparse.ArgumentParser) -> None:
    # `load` is the one action: a positional choice rather than a nested parser keeps the flags
    # on `moments crm` itself, where `--help` and the README's synopsis check find them.
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.usage = "moments crm load --profiles FILE.jsonl [--table TABLE] [--replace]"
    parser.description = (
        "moments crm load: create a PostgreSQL table holding a CRM snapshot file, a column per "
        "field, for the Kafka job to read with CRM_TABLE."
    )
    parser.epilog = environment_help(CrmLoadConfig)
    parser.add_argument("crm_command", choices=("load",), metavar="load", help="load a snapshot")
    add_arguments(parser, CrmLoadConfig)


def run(args: argparse.Namespace) -> int:
    import psycopg

    from udfs.crm.snapshot import load_snapshot

    config = load(CrmLoadConfig, args)
    dsn = config.dsn.get_secret_value()
    try:
        count = load_snapshot(dsn, config.table, config.profiles, replace=config.replace)
    except psycopg.Error as exc:
        # describe_error masks passwords the driver's message may quote.
        print(
            f"moments crm load: PostgreSQL at {_dsn_location(dsn)}: {describe_error(exc)}",
            file=sys.stderr,
        )
        return 1
    print(f"loaded {count} profiles into {config.table} ({_dsn_location(dsn)})")
    return 0
