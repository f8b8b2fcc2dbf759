"""The options of `moments deliver`, each declared once (flag, variable, default, help), and the
checks that span several of them; `delivery_settings()` hands the deliverer what it needs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import SecretStr, field_validator, model_validator

from jobs.options import CommaList, Options, Seconds, option
from jobs.settings import (
    ACTIONS_TOPIC,
    DELIVERY_DLQ_TOPIC,
    ENV_KAFKA_BOOTSTRAP,
    LOCAL_KAFKA_BOOTSTRAP,
)
from udfs.delivery.settings import (
    ENV_BRAZE_API_KEY,
    ENV_BRAZE_REST_ENDPOINT,
    ENV_ITERABLE_API_ENDPOINT,
    ENV_ITERABLE_API_KEY,
    ENV_RATE_LIMITS,
    DeliverySettings,
    parse_rate_limits,
    vendor_settings,
)
from udfs.vendors.iterable import DEFAULT_ENDPOINT as ITERABLE_DEFAULT_ENDPOINT
from udfs.vendors.iterable import MAX_BULK_EVENTS
from udfs.vendors.profile import DEFAULT_PROFILE_FIELDS

DEFAULT_GROUP_ID = "moments-deliver"

SOURCE = "source"
BATCHING = "batching and retries"
PAYLOADS = "vendor payloads"
LIFETIME = "run length and logging"


class DeliverConfig(Options):
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

    batch_size: int = option(
        500,
        "actions read per batch; a batch is split into vendor requests within the vendors' "
        "limits (default %(default)s)",
        group=BATCHING,
        gt=0,
    )
    linger_s: Seconds = option(
        0.2,
        "wait this long after the first action for more before sending (default 200ms)",
        flag="--linger",
        metavar="DURATION",
        group=BATCHING,
        gt=0,
    )
    timeout_s: Seconds = option(
        10.0,
        "HTTP request timeout; a timeout is retried (default 10s)",
        flag="--timeout",
        metavar="DURATION",
        group=BATCHING,
        gt=0,
    )
    max_attempts: int = option(
        6,
        "sends per request before a 5xx / timeout / dropped connection is final "
        "(default %(default)s)",
        group=BATCHING,
        gt=0,
    )
    backoff_base_s: Seconds = option(
        0.5,
        "first retry delay; doubles per retry, with jitter (default 500ms)",
        flag="--backoff-base",
        metavar="DURATION",
        group=BATCHING,
        gt=0,
    )
    backoff_max_s: Seconds = option(
        30.0,
        "longest retry delay (default 30s)",
        flag="--backoff-max",
        metavar="DURATION",
        group=BATCHING,
        gt=0,
    )
    max_rate_limited: int = option(
        20,
        "429s per request before it is dead-lettered (default %(default)s)",
        group=BATCHING,
        ge=0,
    )
    concurrency: int = option(
        8, "HTTP requests in flight at once (default %(default)s)", group=BATCHING, gt=0
    )
    rate_limits: tuple[str, ...] = option(
        (),
        "override a client-side rate limit, e.g. iterable.track_bulk=5/1s (repeatable; endpoints "
        "listed below)",
        flag="--rate-limit",
        env=ENV_RATE_LIMITS,
        metavar="ENDPOINT=N/DURATION",
        group=BATCHING,
        repeatable=True,
    )

    braze_profile_fields: CommaList = option(
        DEFAULT_PROFILE_FIELDS,
        "profile fields copied into Braze event / trigger properties (default "
        f"{','.join(DEFAULT_PROFILE_FIELDS)}; email and phone only if named here; '' for none)",
        metavar="F1,F2",
        group=PAYLOADS,
    )
    iterable_profile_fields: CommaList = option(
        DEFAULT_PROFILE_FIELDS,
        "profile fields copied into Iterable dataFields (same default and rules)",
        metavar="F1,F2",
        group=PAYLOADS,
    )
    iterable_identity: Literal["userId", "email"] = option(
        "userId",
        "identify Iterable users by the action's user_id, or by profile.email "
        "(default %(default)s)",
        group=PAYLOADS,
    )
    iterable_bulk_size: int = option(
        MAX_BULK_EVENTS,
        f"events per trackBulk request (1..{MAX_BULK_EVENTS}; default %(default)s)",
        group=PAYLOADS,
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
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = option(
        "INFO", "default %(default)s", group=LIFETIME
    )

    braze_rest_endpoint: str | None = option(
        None,
        "your Braze REST endpoint, e.g. https://rest.iad-01.braze.com",
        flag=None,
        env=ENV_BRAZE_REST_ENDPOINT,
    )
    braze_api_key: SecretStr | None = option(
        None,
        "Braze REST API key (sent as Authorization: Bearer ...)",
        env=ENV_BRAZE_API_KEY,
        secret=True,
    )
    iterable_api_endpoint: str | None = option(
        None,
        f"Iterable API base URL (default {ITERABLE_DEFAULT_ENDPOINT}; EU projects: "
        "https://api.eu.iterable.com)",
        flag=None,
        env=ENV_ITERABLE_API_ENDPOINT,
    )
    iterable_api_key: SecretStr | None = option(
        None,
        "Iterable server-side API key (sent as Api-Key: ...)",
        env=ENV_ITERABLE_API_KEY,
        secret=True,
    )

    @field_validator("rate_limits")
    @classmethod
    def _known_rate_limits(cls, specs: tuple[str, ...]) -> tuple[str, ...]:
        parse_rate_limits(list(specs))
        return specs

    @model_validator(mode="after")
    def _consistent(self) -> DeliverConfig:
        settings = self.delivery_settings()
        if settings.braze is None and settings.iterable is None:
            raise ValueError(
                f"no vendor configured: set {ENV_BRAZE_API_KEY} and {ENV_BRAZE_REST_ENDPOINT}, "
                f"and/or {ENV_ITERABLE_API_KEY} (see moments deliver --help)"
            )
        if not 1 <= self.iterable_bulk_size <= MAX_BULK_EVENTS:
            raise ValueError(f"--iterable-bulk-size must be 1..{MAX_BULK_EVENTS}")
        if self.backoff_max_s < self.backoff_base_s:
            raise ValueError("--backoff-max must be at least --backoff-base")
        if self.actions is not None and not self.actions.is_file():
            raise ValueError(f"--actions: no such file: {self.actions}")
        return self

    @property
    def dlq_path(self) -> Path | None:
        """File mode: where dead letters go."""
        if self.actions is None:
            return None
        return self.dlq_file or self.actions.with_name(self.actions.name + ".dlq.jsonl")

    def delivery_settings(self) -> DeliverySettings:
        """The deliverer's settings; `SettingsError` names the variable of a half-set vendor."""
        braze = vendor_settings(
            "braze",
            self.braze_api_key,
            self.braze_rest_endpoint,
            ENV_BRAZE_API_KEY,
            ENV_BRAZE_REST_ENDPOINT,
        )
        iterable_endpoint = self.iterable_api_endpoint
        if iterable_endpoint is None and self.iterable_api_key is not None:
            iterable_endpoint = ITERABLE_DEFAULT_ENDPOINT
        iterable = vendor_settings(
            "iterable",
            self.iterable_api_key,
            iterable_endpoint,
            ENV_ITERABLE_API_KEY,
            ENV_ITERABLE_API_ENDPOINT,
        )
        return DeliverySettings(
            braze=braze,
            iterable=iterable,
            braze_profile_fields=self.braze_profile_fields,
            iterable_profile_fields=self.iterable_profile_fields,
            iterable_identity=self.iterable_identity,
            iterable_bulk_size=self.iterable_bulk_size,
            rate_limits=parse_rate_limits(list(self.rate_limits)),
            max_attempts=self.max_attempts,
            backoff_base_s=self.backoff_base_s,
            backoff_max_s=self.backoff_max_s,
            max_rate_limited=self.max_rate_limited,
            timeout_s=self.timeout_s,
            concurrency=self.concurrency,
        )
