"""CRM profiles from a PostgreSQL table, one row per user, through a connection pool.

The sync path uses a `psycopg_pool.ConnectionPool`, which connects in the background, so building
the lookup never blocks or fails when the database is down. The async path uses a
`LoopConnectionPool` on the loop that calls `alookup` (PyFlink's `async_invoke` loop); see
loop_pool.py for why not psycopg_pool's async pool.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import logging
import math
import re
import threading
import time
import uuid
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from udfs.crm.base import (
    KEY_COLUMN,
    Budget,
    LookupResult,
    ThrottledWarning,
    backoff_s,
    describe_error,
)
from udfs.crm.loop_pool import LoopConnectionPool

log = logging.getLogger(__name__)

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def table_identifier(table: str) -> sql.Identifier:
    """`table` or `schema.table`, each part a plain SQL identifier; anything else is refused."""
    parts = table.split(".")
    if not 1 <= len(parts) <= 2 or not all(_IDENTIFIER.fullmatch(part) for part in parts):
        raise ValueError(
            f"CRM table name {table!r} is not an identifier like crm_profiles or "
            "schema.crm_profiles"
        )
    return sql.Identifier(*parts)


def json_safe(value: Any) -> Any:
    """A column value as something `json.dumps` accepts: timestamps and dates as ISO 8601 strings,
    decimals and UUIDs as strings, bytes as base64."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return str(value)


def _profile(row: dict[str, Any]) -> dict[str, Any]:
    return {column: json_safe(value) for column, value in row.items() if column != KEY_COLUMN}


def _is_transient(exc: Exception) -> bool:
    # OperationalError covers refused and lost connections, pool timeouts (PoolTimeout) and
    # statement timeouts (QueryCanceled); a missing table or a bad query will not heal on retry.
    return isinstance(exc, psycopg.OperationalError | TimeoutError)


class PostgresProfileLookup:
    """`SELECT * FROM <table> WHERE user_id = %s`; the row minus `user_id` is the profile.

    timeout_s: the budget of one lookup, every attempt and backoff included; also the server-side
        statement timeout. retries: extra attempts after a transient error, while the budget lasts.
    pool_size: the most connections each pool (sync, async) opens.
    """

    def __init__(
        self,
        dsn: str,
        *,
        table: str = "crm_profiles",
        timeout_s: float = 0.2,
        retries: int = 2,
        pool_size: int = 4,
    ):
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if retries < 0 or pool_size < 1:
            raise ValueError("retries must be >= 0 and pool_size >= 1")
        self._dsn = dsn
        self._table = table
        self._query = sql.SQL("SELECT * FROM {} WHERE {} = %s").format(
            table_identifier(table), sql.Identifier(KEY_COLUMN)
        )
        self._query_many = sql.SQL("SELECT * FROM {} WHERE {} = ANY(%s)").format(
            table_identifier(table), sql.Identifier(KEY_COLUMN)
        )
        self._timeout_s = timeout_s
        self._retries = retries
        self._pool_size = pool_size
        statement_timeout_ms = max(1, math.ceil(timeout_s * 1000))
        self._connect_kwargs = {
            "autocommit": True,
            "row_factory": dict_row,
            # libpq counts connect_timeout in whole seconds and treats 1 as 2.
            "connect_timeout": max(2, math.ceil(timeout_s)),
            "options": f"-c statement_timeout={statement_timeout_ms}",
            "application_name": "micro-moments-crm",
        }
        self._lock = threading.Lock()
        self._pool: ConnectionPool | None = None
        # One async pool per event loop: a pool's connections belong to the loop they were made on.
        self._apools: dict[asyncio.AbstractEventLoop, LoopConnectionPool] = {}
        self._warn = ThrottledWarning(log)

    def __repr__(self) -> str:
        return (
            f"PostgresProfileLookup(table={self._table!r}, timeout_s={self._timeout_s}, "
            f"retries={self._retries}, pool_size={self._pool_size})"
        )

    def _pool_args(self) -> dict[str, Any]:
        return {
            "conninfo": self._dsn,
            "kwargs": self._connect_kwargs,
            "min_size": 1,
            "max_size": self._pool_size,
            "timeout": self._timeout_s,
            "name": "crm-profiles",
            # When the database is down, keep trying in the background without giving up on the
            # pool; lookups meanwhile answer `unavailable` within their budget.
            "reconnect_timeout": 3600.0,
        }

    def _sync_pool(self) -> ConnectionPool:
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    pool = ConnectionPool(open=False, **self._pool_args())
                    pool.open(wait=False)
                    self._pool = pool
        return self._pool

    def lookup(self, user_id: str) -> LookupResult:
        budget = Budget(self._timeout_s)
        attempt = 0
        while True:
            try:
                pool = self._sync_pool()
                with pool.connection(timeout=max(budget.remaining_s(), 0.001)) as conn:
                    row = conn.execute(self._query, (user_id,)).fetchone()
                return self._found(row, budget)
            except Exception as exc:  # never raise for CRM trouble
                reason = self._failure(exc)
                delay = backoff_s(attempt)
                if not (_is_transient(exc) and budget.allows_retry(attempt, self._retries, delay)):
                    return LookupResult(
                        "unavailable", latency_ms=budget.elapsed_ms(), reason=reason
                    )
                time.sleep(delay)
                attempt += 1

    def lookup_many(
        self, user_ids: list[str], timeout_s: float | None = None
    ) -> dict[str, LookupResult]:
        """One query for many users (`= ANY(%s)`): each is `ok` or `missing`, or all are
        `unavailable` when the query fails; one budget for the batch (`timeout_s`, at most the
        lookup's own), retries included."""
        budget = Budget(min(timeout_s or self._timeout_s, self._timeout_s))
        attempt = 0
        while True:
            try:
                pool = self._sync_pool()
                with pool.connection(timeout=max(budget.remaining_s(), 0.001)) as conn:
                    rows = conn.execute(self._query_many, (list(user_ids),)).fetchall()
                found = {row[KEY_COLUMN]: row for row in rows}
                return {user: self._found(found.get(user), budget) for user in user_ids}
            except Exception as exc:  # never raise for CRM trouble
                reason = self._failure(exc)
                delay = backoff_s(attempt)
                if not (_is_transient(exc) and budget.allows_retry(attempt, self._retries, delay)):
                    failed = LookupResult(
                        "unavailable", latency_ms=budget.elapsed_ms(), reason=reason
                    )
                    return dict.fromkeys(user_ids, failed)
                time.sleep(delay)
                attempt += 1

    def _async_pool(self) -> LoopConnectionPool:
        loop = asyncio.get_running_loop()
        pool = self._apools.get(loop)
        if pool is None:
            with self._lock:
                # A loop that is gone (a reopened operator, another asyncio.run) leaves its pool.
                for old_loop in [old for old in self._apools if old.is_closed()]:
                    self._apools.pop(old_loop).close()
                pool = self._apools[loop] = LoopConnectionPool(
                    self._dsn, self._connect_kwargs, self._pool_size
                )
        return pool

    async def alookup(self, user_id: str) -> LookupResult:
        budget = Budget(self._timeout_s)
        attempt = 0
        while True:
            try:
                # The statement timeout bounds a slow query on the server; this bounds a silent
                # network, which the server cannot see.
                async with asyncio.timeout(max(budget.remaining_s(), 0.001)):
                    async with self._async_pool().connection() as conn:
                        cursor = await conn.execute(self._query, (user_id,))
                        row = await cursor.fetchone()
                return self._found(row, budget)
            except Exception as exc:  # never raise for CRM trouble
                reason = self._failure(exc)
                delay = backoff_s(attempt)
                if not (_is_transient(exc) and budget.allows_retry(attempt, self._retries, delay)):
                    return LookupResult(
                        "unavailable", latency_ms=budget.elapsed_ms(), reason=reason
                    )
                await asyncio.sleep(delay)
                attempt += 1

    @staticmethod
    def _found(row: dict[str, Any] | None, budget: Budget) -> LookupResult:
        if row is None:
            return LookupResult("missing", latency_ms=budget.elapsed_ms())
        return LookupResult("ok", _profile(row), latency_ms=budget.elapsed_ms())

    def _failure(self, exc: Exception) -> str:
        if isinstance(exc, TimeoutError):
            reason = "timeout"
        elif isinstance(exc, psycopg.errors.QueryCanceled):
            reason = "statement timeout"
        elif isinstance(exc, psycopg.OperationalError):
            reason = "connection"
        elif isinstance(exc, psycopg.Error):
            reason = "query"
        else:
            reason = "internal"
        self._warn("CRM lookup in PostgreSQL failed (%s): %s", reason, describe_error(exc))
        return reason

    def close(self) -> None:
        """Closes the pools; safe to call twice, from any thread, after the event loop is gone."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close(timeout=1.0)
        with self._lock:
            apools, self._apools = list(self._apools.values()), {}
        for apool in apools:
            apool.close()

    async def aclose(self) -> None:
        self.close()
