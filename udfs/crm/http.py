"""CRM profiles from an HTTP profile API: `GET {base_url}/profiles/{user_id}` with a bearer token.

200 with a JSON object is the profile, 404 is `missing`; 429, 5xx, timeouts and connection errors
are retried while the budget lasts, then `unavailable`; any other answer (401, 403, a body that is
not a JSON object) is `unavailable` at once, since retrying will not fix it. Stdlib only: one
keep-alive `http.client` connection per thread; `alookup` runs the same code on a small thread pool
of its own, so the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote, urlsplit

from udfs.crm.base import (
    KEY_COLUMN,
    Budget,
    LookupResult,
    ThrottledWarning,
    backoff_s,
    describe_error,
)

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20
_RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after_s: float = 0.0):
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s


class _Final(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _retry_after_s(value: str | None) -> float:
    # Only the delay-seconds form; an HTTP-date is rare from profile APIs and is ignored.
    try:
        return max(0.0, float(value)) if value else 0.0
    except ValueError:
        return 0.0


class HttpProfileLookup:
    """A client of a profile API. timeout_s: the budget of one lookup, every attempt and backoff
    included; retries: extra attempts after a retryable failure; max_workers: threads for `alookup`
    (also the most requests in flight at once)."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout_s: float = 0.2,
        retries: int = 2,
        max_workers: int = 16,
    ):
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("CRM HTTP base URL must look like http(s)://host[:port][/prefix]")
        if timeout_s <= 0 or retries < 0 or max_workers < 1:
            raise ValueError("timeout_s must be positive, retries >= 0, max_workers >= 1")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._origin = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
        self._headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json",
            "User-Agent": "micro-moments-crm",
        }
        self._timeout_s = timeout_s
        self._retries = retries
        self._max_workers = max_workers
        self._local = threading.local()
        self._connections: set[http.client.HTTPConnection] = set()
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._warn = ThrottledWarning(log)

    def __repr__(self) -> str:
        return (
            f"HttpProfileLookup(base_url={self._origin + self._prefix!r}, "
            f"timeout_s={self._timeout_s}, retries={self._retries})"
        )

    def _connection(self, timeout_s: float) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            conn = cls(self._host, self._port, timeout=timeout_s)
            self._local.conn = conn
            with self._lock:
                self._connections.add(conn)
        conn.timeout = timeout_s
        if conn.sock is not None:
            conn.sock.settimeout(timeout_s)
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            self._local.conn = None
            with self._lock:
                self._connections.discard(conn)
            conn.close()

    def _get(self, user_id: str, timeout_s: float) -> LookupResult:
        path = f"{self._prefix}/profiles/{quote(user_id, safe='')}"
        try:
            conn = self._connection(timeout_s)
            conn.request("GET", path, headers=self._headers)
            response = conn.getresponse()
            body = response.read(MAX_BODY_BYTES + 1)
        except TimeoutError as exc:
            self._drop_connection()
            raise _Retryable("timeout") from exc
        except (OSError, http.client.HTTPException) as exc:
            self._drop_connection()
            raise _Retryable("connection") from exc
        if response.will_close:
            self._drop_connection()
        status = response.status
        if status == 404:
            return LookupResult("missing")
        if status in _RETRYABLE_STATUSES:
            raise _Retryable(f"http {status}", _retry_after_s(response.getheader("Retry-After")))
        if status != 200:
            raise _Final(f"http {status}")
        if len(body) > MAX_BODY_BYTES:
            raise _Final("response too large")
        try:
            profile: Any = json.loads(body)
        except ValueError as exc:
            raise _Final("response not JSON") from exc
        if not isinstance(profile, dict):
            raise _Final("response not a JSON object")
        profile.pop(KEY_COLUMN, None)
        return LookupResult("ok", profile)

    def lookup(self, user_id: str) -> LookupResult:
        budget = Budget(self._timeout_s)
        attempt = 0
        while True:
            try:
                result = self._get(user_id, max(budget.remaining_s(), 0.001))
                return LookupResult(result.status, result.profile, budget.elapsed_ms())
            except _Retryable as exc:
                delay = backoff_s(attempt, at_least_s=exc.retry_after_s)
                if not budget.allows_retry(attempt, self._retries, delay):
                    return self._unavailable(exc.reason, budget)
                time.sleep(delay)
                attempt += 1
            except _Final as exc:
                return self._unavailable(exc.reason, budget)
            except Exception as exc:  # never raise for CRM trouble
                self._drop_connection()
                self._warn("CRM lookup over HTTP failed: %s", describe_error(exc))
                return LookupResult(
                    "unavailable", latency_ms=budget.elapsed_ms(), reason="internal"
                )

    def _unavailable(self, reason: str, budget: Budget) -> LookupResult:
        self._warn("CRM lookup at %s failed: %s", self._origin, reason)
        return LookupResult("unavailable", latency_ms=budget.elapsed_ms(), reason=reason)

    async def alookup(self, user_id: str) -> LookupResult:
        if self._executor is None:
            with self._lock:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(self._max_workers, "crm-http")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.lookup, user_id)

    def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            connections, self._connections = self._connections, set()
        for conn in connections:
            conn.close()

    async def aclose(self) -> None:
        self.close()
