"""Build the deliverer (adapters, ledger, one rate limiter per endpoint, transport, metrics) from
the settings: with a ledger database, the ledger and the rate limits are shared by every replica."""

from __future__ import annotations

import hashlib
import threading

from udfs.delivery.deliverer import Adapter, Deliverer
from udfs.delivery.ledger import Ledger, MemoryLedger
from udfs.delivery.metrics import DeliveryMetrics
from udfs.delivery.settings import DeliverySettings
from udfs.delivery.transport import HttpTransport
from udfs.vendors import BrazeAdapter, BrazeConfig, IterableAdapter, IterableConfig
from udfs.vendors.ratelimit import RateLimiter
from udfs.vendors.retry import RetryPolicy


def build_deliverer(
    settings: DeliverySettings,
    stop: threading.Event | None = None,
    metrics: DeliveryMetrics | None = None,
) -> Deliverer:
    adapters: dict[str, Adapter] = {}
    if settings.braze is not None:
        adapters["braze"] = BrazeAdapter(
            BrazeConfig(
                endpoint=settings.braze.endpoint,
                api_key=settings.braze.api_key.get_secret_value(),
                profile_fields=settings.braze_profile_fields,
            )
        )
    if settings.iterable is not None:
        adapters["iterable"] = IterableAdapter(
            IterableConfig(
                endpoint=settings.iterable.endpoint,
                api_key=settings.iterable.api_key.get_secret_value(),
                identity=settings.iterable_identity,  # type: ignore[arg-type]
                profile_fields=settings.iterable_profile_fields,
                max_bulk_events=settings.iterable_bulk_size,
            )
        )
    ledger, limiters = _ledger_and_limiters(settings)
    policy = RetryPolicy(
        max_attempts=settings.max_attempts,
        base_delay_s=settings.backoff_base_s,
        max_delay_s=settings.backoff_max_s,
        max_rate_limited=settings.max_rate_limited,
    )
    return Deliverer(
        adapters,
        limiters,
        HttpTransport(timeout_s=settings.timeout_s),
        policy=policy,
        concurrency=settings.concurrency,
        stop=stop,
        ledger=ledger,
        metrics=metrics,
    )


def _ledger_and_limiters(settings: DeliverySettings) -> tuple[Ledger, dict]:
    if settings.ledger_dsn is None:
        return MemoryLedger(), _process_limiters(settings)
    from udfs.delivery.postgres import PostgresLedger, open_pool
    from udfs.delivery.shared_limits import SharedRateLimiter

    # Every sending thread may hold a connection, plus the heartbeat and the batch's claim.
    pool = open_pool(settings.ledger_dsn.get_secret_value(), settings.concurrency + 2)
    ledger = PostgresLedger(pool)
    if settings.rate_limit_scope == "process":
        limiters = _process_limiters(settings)
    else:
        limiters = {
            name: SharedRateLimiter(
                pool,
                _account_key(settings, name),
                limit,
                settings.rate_limit_headroom,
                in_flight_s=settings.timeout_s,
            )
            for name, limit in settings.rate_limits.items()
        }
    return ledger, limiters


def _process_limiters(settings: DeliverySettings) -> dict[str, RateLimiter]:
    # A send never answered reached the vendor within the client's timeout, if at all.
    return {
        name: RateLimiter(limit, in_flight_s=settings.timeout_s)
        for name, limit in settings.rate_limits.items()
    }


def _account_key(settings: DeliverySettings, endpoint: str) -> str:
    """Vendors count limits per account: the schedule row is the endpoint's and the account's
    (endpoint URL and key, hashed: the row names no secret)."""
    vendor = getattr(settings, endpoint.split(".")[0], None)
    if vendor is None:
        return endpoint
    account = f"{vendor.endpoint}|{vendor.api_key.get_secret_value()}".encode()
    return f"{endpoint}@{hashlib.sha256(account).hexdigest()[:16]}"
