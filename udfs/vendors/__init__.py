"""Braze and Iterable adapters: actions in, HTTP request descriptions out; response in, outcome out.

Pure Python (no network, no Flink): `udfs.delivery` sends the requests and applies the outcomes.
"""

from udfs.vendors.braze import BrazeAdapter, BrazeConfig
from udfs.vendors.http import HttpRequest, HttpResponse, RequestItem
from udfs.vendors.iterable import IterableAdapter, IterableConfig
from udfs.vendors.outcome import Outcome, Plan, Verdict
from udfs.vendors.ratelimit import RateLimit, RateLimiter
from udfs.vendors.retry import RetryPolicy

__all__ = [
    "BrazeAdapter",
    "BrazeConfig",
    "HttpRequest",
    "HttpResponse",
    "IterableAdapter",
    "IterableConfig",
    "Outcome",
    "Plan",
    "RateLimit",
    "RateLimiter",
    "RequestItem",
    "RetryPolicy",
    "Verdict",
]
