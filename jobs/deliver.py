"""Placeholder for `moments deliver`; filled by its issue."""

from __future__ import annotations

from jobs.cli import UsageError


def configure_parser(parser) -> None:
    pass


def run(args) -> int:
    raise UsageError("not implemented yet")
