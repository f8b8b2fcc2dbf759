"""What the deliverer needs to know (vendors, limits, retries) as one validated model, and the
variable names and documented rate limits it is configured from."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, SecretStr

from schemas.errors import UserError
from udfs.vendors import braze as braze_api
from udfs.vendors import iterable as iterable_api
from udfs.vendors.ratelimit import RateLimit

# The vendors' documented per-endpoint limits. Iterable's triggerWorkflow limit is not in the docs
# we could find: 10 req/s is a conservative guess, override it if you know yours.
DEFAULT_RATE_LIMITS: dict[str, str] = {
    braze_api.USERS_TRACK: "3000/3s",
    braze_api.MESSAGING: "250000/1h",
    iterable_api.TRACK_BULK: "10/1s",
    iterable_api.TRACK: "2000/1s",
    iterable_api.TRIGGER_WORKFLOW: "10/1s",
}

ENV_BRAZE_API_KEY = "BRAZE_API_KEY"
ENV_BRAZE_API_KEY_FILE = "BRAZE_API_KEY_FILE"
ENV_BRAZE_REST_ENDPOINT = "BRAZE_REST_ENDPOINT"
ENV_ITERABLE_API_KEY = "ITERABLE_API_KEY"
ENV_ITERABLE_API_KEY_FILE = "ITERABLE_API_KEY_FILE"
ENV_ITERABLE_API_ENDPOINT = "ITERABLE_API_ENDPOINT"
ENV_RATE_LIMITS = "DELIVER_RATE_LIMITS"
ENV_LEDGER_DSN = "DELIVER_LEDGER_DSN"
ENV_METRICS_ADDRESS = "DELIVER_METRICS_ADDRESS"


class SettingsError(UserError, ValueError):
    """A setting the operator must fix (printed as one line by the CLI)."""


class VendorSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    endpoint: str
    api_key: SecretStr


class DeliverySettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    braze: VendorSettings | None = None
    iterable: VendorSettings | None = None
    braze_profile_fields: tuple[str, ...]
    iterable_profile_fields: tuple[str, ...]
    iterable_identity: str = "userId"
    iterable_bulk_size: int = iterable_api.MAX_BULK_EVENTS
    rate_limits: dict[str, RateLimit]
    max_attempts: int
    backoff_base_s: float
    backoff_max_s: float
    max_rate_limited: int
    timeout_s: float
    concurrency: int
    ledger_dsn: SecretStr | None = None
    rate_limit_scope: str = "shared"  # "process" without a ledger
    rate_limit_headroom: float = 0.1

    def configured(self) -> list[str]:
        return [name for name in ("braze", "iterable") if getattr(self, name) is not None]


def vendor_settings(
    vendor: str, key: SecretStr | None, endpoint: str | None, key_env: str, endpoint_env: str
) -> VendorSettings | None:
    if key is None and not endpoint:
        return None
    if key is None:
        raise SettingsError(f"{vendor} endpoint is set but no API key: set {key_env}")
    if not endpoint:
        raise SettingsError(f"{vendor} API key is set but no endpoint: set {endpoint_env}")
    if not endpoint.startswith(("http://", "https://")):
        raise SettingsError(f"{vendor} endpoint must start with https:// (got {endpoint!r})")
    return VendorSettings(endpoint=endpoint.rstrip("/"), api_key=key)


def parse_rate_limits(specs: list[str]) -> dict[str, RateLimit]:
    """`ENDPOINT=N/DURATION` items over the defaults, e.g. `iterable.track_bulk=5/1s`."""
    limits = {name: RateLimit.parse(text) for name, text in DEFAULT_RATE_LIMITS.items()}
    for spec in specs:
        name, sep, text = spec.partition("=")
        name = name.strip()
        if not sep or name not in DEFAULT_RATE_LIMITS:
            raise SettingsError(
                f"bad rate limit {spec!r}: expected ENDPOINT=N/DURATION with ENDPOINT one of "
                + ", ".join(DEFAULT_RATE_LIMITS)
            )
        try:
            limits[name] = RateLimit.parse(text)
        except ValueError as exc:
            raise SettingsError(str(exc)) from exc
    return limits
