"""Build the deliverer (adapters, one rate limiter per endpoint, transport) from the settings."""

from __future__ import annotations

import threading

from udfs.delivery.deliverer import Adapter, Deliverer
from udfs.delivery.settings import DeliverySettings
from udfs.delivery.transport import HttpTransport
from udfs.vendors import BrazeAdapter, BrazeConfig, IterableAdapter, IterableConfig
from udfs.vendors.ratelimit import RateLimiter
from udfs.vendors.retry import RetryPolicy


def build_deliverer(settings: DeliverySettings, stop: threading.Event | None = None) -> Deliverer:
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
    limiters = {name: RateLimiter(limit) for name, limit in settings.rate_limits.items()}
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
    )
