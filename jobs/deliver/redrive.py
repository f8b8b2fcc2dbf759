"""`moments redrive`: send the delivery dead letters (all, or those a filter picks) again once the
cause is fixed, with the same action ids, through the same ledger: what a vendor accepted meanwhile
(an earlier redrive, a replica) is never sent again, and what fails again is dead-lettered again.
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path
from typing import Literal

from jobs.cli import UsageError
from jobs.deliver.cli import _stop_on_signals, sender
from jobs.deliver.sending import SendOptions
from jobs.options import CommaList, Seconds, add_arguments, environment_help, load, option
from jobs.settings import DELIVERY_DLQ_TOPIC, ENV_KAFKA_BOOTSTRAP, LOCAL_KAFKA_BOOTSTRAP
from udfs.delivery.dead_letters import DeadLetterTopic, FilteredSource, LetterFilter, parse_letter
from udfs.delivery.drain import drain, format_summary
from udfs.delivery.files import FileSource
from udfs.delivery.pipeline import DeliveryPipeline
from udfs.delivery.settings import ENV_LEDGER_DSN

LETTERS = "which dead letters"


class RedriveConfig(SendOptions):
    """What `moments redrive` reads from flags and environment, validated at start-up."""

    bootstrap_servers: str = option(
        LOCAL_KAFKA_BOOTSTRAP,
        f"Kafka bootstrap servers (default: ${ENV_KAFKA_BOOTSTRAP} or {LOCAL_KAFKA_BOOTSTRAP})",
        env=ENV_KAFKA_BOOTSTRAP,
        metavar="HOST:PORT",
        group=LETTERS,
    )
    dlq_topic: str = option(
        DELIVERY_DLQ_TOPIC,
        "the dead-letter topic, read from its beginning to its end at start; letters failing "
        "again are appended to it (default %(default)s)",
        group=LETTERS,
    )
    dlq_file: Path | None = option(
        None,
        "a dead-letter file of `moments deliver --actions` instead; letters failing again go to "
        "FILE.redrive.jsonl",
        metavar="FILE",
        group=LETTERS,
    )
    destination: Literal["braze", "iterable"] | None = option(
        None, "only letters for this destination", group=LETTERS
    )
    rule_ids: CommaList = option((), "only letters of these rules", metavar="R1,R2", group=LETTERS)
    reason_contains: str = option(
        "", "only letters whose reason contains this text", metavar="TEXT", group=LETTERS
    )
    since_s: Seconds | None = option(
        None,
        "only letters dead-lettered within this long before now",
        flag="--since",
        metavar="DURATION",
        group=LETTERS,
    )


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        environment_help(RedriveConfig)
        + f"\n\n  Needs the delivery ledger ({ENV_LEDGER_DSN}): it is what keeps a redrive from\n"
        "  sending an action a vendor has accepted since it was dead-lettered.\n\n"
        "exit status: 0 every picked letter delivered (or already accepted); 1 some failed again;\n"
        "  2 usage or configuration error."
    )
    add_arguments(parser, RedriveConfig)


def run(args: argparse.Namespace) -> int:
    config = load(RedriveConfig, args)
    if config.ledger_dsn is None:
        raise UsageError(f"redrive needs the delivery ledger: set {ENV_LEDGER_DSN}")
    if config.dlq_file is not None and not config.dlq_file.is_file():
        raise UsageError(f"--dlq-file: no such file: {config.dlq_file}")
    since_ms = None
    if config.since_s is not None:
        since_ms = int((time.time() - config.since_s) * 1000)
    picked = LetterFilter(
        destinations=(config.destination,) if config.destination else (),
        rule_ids=config.rule_ids,
        reason_contains=config.reason_contains,
        failed_after_ms=since_ms,
    )
    stop = threading.Event()
    with sender(config, stop) as deliverer, _stop_on_signals(stop), _source(config) as letters:
        source = FilteredSource(letters, picked.matches)
        pipeline = DeliveryPipeline(deliverer, redrive=True, parse=parse_letter)
        summary = drain(pipeline, source, batch_size=config.batch_size, stop=stop)
    print(format_summary(summary))
    passed = ", ".join(f"{why}: {n}" for why, n in sorted(source.passed_over.items()))
    print(f"letters passed over: {passed or 'none'}")
    return 1 if summary["dead_lettered_records"] else 0


def _source(config: RedriveConfig) -> FileSource | DeadLetterTopic:
    if config.dlq_file is not None:
        return FileSource(config.dlq_file, config.dlq_file.with_suffix(".redrive.jsonl"))
    return DeadLetterTopic(config.bootstrap_servers, config.dlq_topic, config.batch_size)
