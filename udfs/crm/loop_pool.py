"""A small pool of async PostgreSQL connections for one event loop, with no background tasks.

Why not `psycopg_pool.AsyncConnectionPool`: its worker tasks belong to the loop that opened it, and
PyFlink stops the loop running `async_invoke` before it calls `close()`, so those tasks can only
be abandoned ("Task was destroyed but it is pending!" on every shutdown). Running that pool on a
loop of our own instead costs a thread hop per lookup, measured at 2.4x fewer lookups/s
(bench/crm_bench.py). This pool lives on the caller's loop and holds only idle connections between
lookups, so it can be closed from any thread, even after its loop is gone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

#: Connections older than this are closed instead of reused (follows a DNS or failover change).
MAX_LIFETIME_S = 3600.0


class LoopConnectionPool:
    """At most `max_size` connections in use at once on `loop`; idle ones are reused, broken or
    old ones dropped. Connections are opened on demand: a down database costs a refused connect
    per attempt, not a wait."""

    def __init__(self, dsn: str, connect_kwargs: dict[str, Any], max_size: int):
        self.loop = asyncio.get_running_loop()
        self._dsn = dsn
        self._connect_kwargs = connect_kwargs
        self._slots = asyncio.Semaphore(max_size)
        self._idle: list[tuple[float, psycopg.AsyncConnection]] = []
        self._closed = False

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection]:
        async with self._slots:
            created_at, conn = await self._take()
            try:
                yield conn
            except BaseException:
                # Interrupted mid-query (an error, a timeout, a cancel): its state is unknown.
                await conn.close()
                raise
            if (
                self._closed
                or conn.closed
                or conn.info.transaction_status != TransactionStatus.IDLE
                or time.monotonic() - created_at > MAX_LIFETIME_S
            ):
                await conn.close()
            else:
                self._idle.append((created_at, conn))

    async def _take(self) -> tuple[float, psycopg.AsyncConnection]:
        while self._idle:
            created_at, conn = self._idle.pop()
            if not conn.closed:
                return created_at, conn
        conn = await psycopg.AsyncConnection.connect(self._dsn, **self._connect_kwargs)
        return time.monotonic(), conn

    def close(self) -> None:
        """Closes the idle connections. Callable from any thread and after the loop is closed:
        closing an idle connection is a local libpq call, nothing to await."""
        self._closed = True
        idle, self._idle = self._idle, []
        for _, conn in idle:
            conn.pgconn.finish()
