"""The options of `moments deliver`: where actions come from and how long to run, on top of the
sending options shared with `moments redrive` (`sending.py`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import model_validator

from jobs.deliver.sending import SendOptions
from jobs.options import Seconds, option
from jobs.settings import (
    ACTIONS_TOPIC,
    DELIVERY_DLQ_TOPIC,
    ENV_KAFKA_BOOTSTRAP,
    LOCAL_KAFKA_BOOTSTRAP,
)

DEFAULT_GROUP_ID = "moments-deliver"

SOURCE = "source"
LIFETIME = "run length and logging"


class DeliverConfig(SendOptions):
    """Everything `moments deliver` reads from flags and environment, validated at start-up."""

    actions: Path | None = option(
        None,
        "deliver the actions in this JSONL file instead of reading Kafka, then print a summary "
        "(replays, demos)",
        metavar="FILE",
        group=SOURCE,
    )
    bootstrap_servers: str = option(
        LOCAL_KAFKA_BOOTSTRAP,
        f"Kafka bootstrap servers (default: ${ENV_KAFKA_BOOTSTRAP} or {LOCAL_KAFKA_BOOTSTRAP})",
        env=ENV_KAFKA_BOOTSTRAP,
        metavar="HOST:PORT",
        group=SOURCE,
    )
    topic: str = option(ACTIONS_TOPIC, "actions topic (default %(default)s)", group=SOURCE)
    group_id: str = option(DEFAULT_GROUP_ID, "consumer group (default %(default)s)", group=SOURCE)
    start_from: Literal["earliest", "latest"] = option(
        "earliest", "where a new consumer group starts (default %(default)s)", group=SOURCE
    )
    dlq_topic: str = option(
        DELIVERY_DLQ_TOPIC, "delivery dead-letter topic (default %(default)s)", group=SOURCE
    )
    dlq_file: Path | None = option(
        None,
        "file mode: where dead letters go (default: FILE.dlq.jsonl next to --actions; written "
        "only if there are any)",
        metavar="FILE",
        group=SOURCE,
    )
    max_idle_s: Seconds | None = option(
        None,
        "Kafka mode: stop after this long without new actions, counted once partitions are "
        "assigned (default: run until SIGTERM / Ctrl-C)",
        flag="--max-idle",
        metavar="DURATION",
        group=LIFETIME,
    )
    max_actions: int | None = option(
        None,
        "stop after N records have a final outcome and are committed",
        metavar="N",
        group=LIFETIME,
        gt=0,
    )

    @model_validator(mode="after")
    def _source_exists(self) -> DeliverConfig:
        if self.actions is not None and not self.actions.is_file():
            raise ValueError(f"--actions: no such file: {self.actions}")
        return self

    @property
    def dlq_path(self) -> Path | None:
        """File mode: where dead letters go."""
        if self.actions is None:
            return None
        return self.dlq_file or self.actions.with_name(self.actions.name + ".dlq.jsonl")
