"""The options every command that sends to vendors shares (`moments deliver`, `moments redrive`):
vendors and keys, batching and retries, payloads, the ledger, shared rate limits and metrics,
each declared once; `delivery_settings()` hands the deliverer what it needs.
"""

from __future__ import annotations

from typing import Literal

from pydantic import SecretStr, field_validator, model_validator

from jobs.options import CommaList, Options, Seconds, option
from udfs.delivery.settings import (
    ENV_BRAZE_API_KEY,
    ENV_BRAZE_REST_ENDPOINT,
    ENV_ITERABLE_API_ENDPOINT,
    ENV_ITERABLE_API_KEY,
    ENV_LEDGER_DSN,
    ENV_METRICS_ADDRESS,
    ENV_RATE_LIMITS,
    DeliverySettings,
    parse_rate_limits,
    vendor_settings,
)
from udfs.vendors.iterable import DEFAULT_ENDPOINT as ITERABLE_DEFAULT_ENDPOINT
from udfs.vendors.iterable import MAX_BULK_EVENTS
from udfs.vendors.profile import DEFAULT_PROFILE_FIELDS

BATCHING = "batching and retries"
PAYLOADS = "vendor payloads"
OPERATIONS = "ledger, shared rate limits, metrics and logging"


class SendOptions(Options):
    """What sending to Braze and Iterable reads from flags and environment."""

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

    ledger_dsn: SecretStr | None = option(
        None,
        "PostgreSQL (libpq URL) of the delivery ledger, shared by every replica: what each vendor "
        "accepted is never sent again (without it: this process's memory only)",
        env=ENV_LEDGER_DSN,
        secret=True,
    )
    rate_limit_scope: Literal["shared", "process"] = option(
        "shared",
        "shared: every replica books its sends on one schedule in the ledger database, so N "
        "replicas stay within the vendor's limit; process: each replica alone (default "
        "%(default)s; process without a ledger)",
        group=OPERATIONS,
    )
    rate_limit_headroom: float = option(
        0.1,
        "shared limits keep this share of each period free, for requests arriving unevenly "
        "(default %(default)s)",
        group=OPERATIONS,
        ge=0,
        le=1,
    )
    metrics_address: str = option(
        "",
        "serve Prometheus metrics on HOST:PORT/metrics (port 0: any free port, logged; default: "
        "off)",
        env=ENV_METRICS_ADDRESS,
        metavar="HOST:PORT",
        group=OPERATIONS,
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = option(
        "INFO", "default %(default)s", group=OPERATIONS
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
    def _consistent(self) -> SendOptions:
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
        address = self.metrics_address
        if address and not address.rpartition(":")[2].isdigit():
            raise ValueError(f"--metrics-address must be HOST:PORT (got {address!r})")
        return self

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
            ledger_dsn=self.ledger_dsn,
            rate_limit_scope=self.rate_limit_scope,
            rate_limit_headroom=self.rate_limit_headroom,
        )
