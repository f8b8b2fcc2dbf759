"""What a vendor response means for the actions in the request."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from udfs.vendors.http import HttpRequest


class Verdict(Enum):
    DELIVERED = "delivered"  # 2xx; `failed` may still name items the vendor rejected one by one
    RETRY = "retry"  # 5xx, timeout, dropped connection: same request again after a backoff
    RATE_LIMITED = "rate_limited"  # 429: same request again after `retry_after_s`
    FAILED = "failed"  # 4xx other than 429: permanent for every item in the request


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    status: int | None
    message: str = ""
    failed: dict[str, str] = field(default_factory=dict)  # action_id -> vendor's reason
    retry_after_s: float | None = None  # only for RATE_LIMITED, when the vendor said


@dataclass(frozen=True)
class Plan:
    """The requests for a batch, and the actions that cannot be sent (action_id -> reason)."""

    requests: list[HttpRequest]
    rejected: dict[str, str] = field(default_factory=dict)
