"""The delivery ledger in PostgreSQL, shared by every replica of `moments deliver` (and `moments
redrive`): tables created on first use, one owner row per running process kept fresh by a
heartbeat, so a replica that dies (SIGKILL) leaves keys another can take over seconds later.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterable

from schemas.errors import UserError
from udfs.delivery.ledger import Claim, Key
from udfs.delivery.settings import ENV_LEDGER_DSN

log = logging.getLogger("moments.deliver")

# A replica whose heartbeat is older than this is gone: its unfinished keys may be taken over.
OWNER_TIMEOUT_S = 5.0
HEARTBEAT_S = 1.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS moments_delivery_ledger (
    action_id   text        NOT NULL,
    destination text        NOT NULL,
    state       text        NOT NULL CHECK (state IN ('pending', 'accepted', 'dead')),
    owner       text,
    sent        boolean     NOT NULL DEFAULT false,
    ambiguous   integer     NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (action_id, destination)
);
CREATE TABLE IF NOT EXISTS moments_delivery_owners (
    owner        text PRIMARY KEY,
    heartbeat_at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS moments_delivery_rate (
    endpoint     text PRIMARY KEY,
    next_free    timestamptz NOT NULL,
    paused_until timestamptz NOT NULL
);
ALTER TABLE moments_delivery_rate ADD COLUMN IF NOT EXISTS last_seq bigint NOT NULL DEFAULT 0;
CREATE TABLE IF NOT EXISTS moments_delivery_sends (
    endpoint text NOT NULL,
    seq      bigint NOT NULL,
    started  timestamptz NOT NULL,
    answered timestamptz,
    PRIMARY KEY (endpoint, seq)
);
"""
# Replicas starting together must not race on CREATE TABLE (pg_type unique violations).
SCHEMA_LOCK = 0x6D6D_6C64  # "mmld"

WANTED = "SELECT * FROM unnest(%(ids)s::text[], %(dests)s::text[]) AS w(action_id, destination)"

CLAIM = f"""
WITH wanted AS ({WANTED}),
claimed AS (
    INSERT INTO moments_delivery_ledger AS l (action_id, destination, state, owner)
    SELECT action_id, destination, 'pending', %(owner)s FROM wanted
    ON CONFLICT (action_id, destination) DO UPDATE
        SET owner = EXCLUDED.owner, state = 'pending', updated_at = now()
        WHERE (l.state = 'pending' AND (l.owner IS NULL OR l.owner = EXCLUDED.owner OR NOT EXISTS (
                  SELECT 1 FROM moments_delivery_owners o WHERE o.owner = l.owner
                  AND o.heartbeat_at > now() - make_interval(secs => %(timeout)s))))
           OR (%(redrive)s AND l.state = 'dead')
    RETURNING l.action_id, l.destination
)
SELECT w.action_id, w.destination, c.action_id IS NOT NULL AS mine, l.state
FROM wanted w
LEFT JOIN claimed c USING (action_id, destination)
LEFT JOIN moments_delivery_ledger l USING (action_id, destination)
"""

SENDING = f"""
UPDATE moments_delivery_ledger l
SET sent = true, ambiguous = l.ambiguous + old.sent::int, updated_at = now()
FROM (
    SELECT action_id, destination, sent FROM moments_delivery_ledger
    WHERE (action_id, destination) IN ({WANTED}) AND owner = %(owner)s AND state = 'pending'
    FOR UPDATE
) old
WHERE l.action_id = old.action_id AND l.destination = old.destination
RETURNING old.action_id, old.destination, old.sent
"""

FINAL = f"""
UPDATE moments_delivery_ledger
SET state = %(state)s, sent = false, updated_at = now()
WHERE (action_id, destination) IN ({WANTED}) AND state <> 'accepted'
"""

UNSENT = f"""
UPDATE moments_delivery_ledger SET sent = false, updated_at = now()
WHERE (action_id, destination) IN ({WANTED}) AND state = 'pending'
"""

HEARTBEAT = """
INSERT INTO moments_delivery_owners (owner, heartbeat_at) VALUES (%(owner)s, now())
ON CONFLICT (owner) DO UPDATE SET heartbeat_at = now()
"""


class LedgerError(UserError):
    """The ledger database cannot be used (one line, exit code 2)."""


def _params(keys: Iterable[Key], **extra) -> dict:
    # Sorted: concurrent claims lock rows in one order, so they never deadlock.
    ordered = sorted(set(keys))
    return {"ids": [k[0] for k in ordered], "dests": [k[1] for k in ordered], **extra}


def open_pool(dsn: str, size: int):
    """A small autocommit pool on `dsn`, with the tables in place."""
    from psycopg_pool import ConnectionPool, PoolTimeout

    pool = ConnectionPool(
        dsn, min_size=1, max_size=size, kwargs={"autocommit": True}, open=True, name="ledger"
    )
    try:
        pool.wait(timeout=15)
    except PoolTimeout:
        pool.close()
        # The DSN may hold a password: name the variable, never the value.
        raise LedgerError(f"cannot connect to the ledger database ({ENV_LEDGER_DSN})") from None
    with pool.connection() as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        conn.execute(SCHEMA)
    return pool


class PostgresLedger:
    """The ledger in PostgreSQL; `owner` names this process (host, pid, random suffix)."""

    def __init__(self, pool, owner_timeout_s: float = OWNER_TIMEOUT_S):
        self.pool = pool
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.owner_timeout_s = owner_timeout_s
        self._stop = threading.Event()
        self._beat()
        self._heartbeat = threading.Thread(target=self._beat_loop, name="ledger-heartbeat")
        self._heartbeat.daemon = True
        self._heartbeat.start()

    def _beat(self) -> None:
        with self.pool.connection() as conn:
            conn.execute(HEARTBEAT, {"owner": self.owner})

    def _beat_loop(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self._beat()
            except Exception as exc:  # a missed beat only delays nothing; keep beating
                log.warning("ledger heartbeat failed: %s", type(exc).__name__)

    def claim(self, keys: Iterable[Key], redrive: bool = False) -> Claim:
        params = _params(keys, owner=self.owner, timeout=self.owner_timeout_s, redrive=redrive)
        claim = Claim()
        if not params["ids"]:
            return claim
        with self.pool.connection() as conn:
            rows = conn.execute(CLAIM, params).fetchall()
        for action_id, destination, mine, state in rows:
            key = (action_id, destination)
            if mine:
                claim.granted.add(key)
            elif state == "accepted":
                claim.accepted.add(key)
            elif state == "dead":
                claim.dead.add(key)
            else:
                claim.busy.add(key)
        return claim

    def sending(self, keys: Iterable[Key]) -> tuple[bool, set[Key]]:
        params = _params(keys, owner=self.owner)
        with self.pool.connection() as conn:
            rows = conn.execute(SENDING, params).fetchall()
        again = {(action_id, dest) for action_id, dest, was_sent in rows if was_sent}
        return len(rows) == len(params["ids"]), again

    def _execute(self, sql: str, keys: Iterable[Key], **extra) -> None:
        params = _params(keys, **extra)
        if params["ids"]:
            with self.pool.connection() as conn:
                conn.execute(sql, params)

    def unsent(self, keys: Iterable[Key]) -> None:
        self._execute(UNSENT, keys)

    def accepted(self, keys: Iterable[Key]) -> None:
        self._execute(FINAL, keys, state="accepted")

    def dead(self, keys: Iterable[Key]) -> None:
        self._execute(FINAL, keys, state="dead")

    def close(self) -> None:
        """Stop the heartbeat and retire this owner, so its unfinished keys (a stop mid-batch)
        can be taken over at once rather than after `owner_timeout_s`."""
        self._stop.set()
        self._heartbeat.join(timeout=5)
        try:
            with self.pool.connection() as conn:
                conn.execute("DELETE FROM moments_delivery_owners WHERE owner = %s", (self.owner,))
        except Exception as exc:
            log.warning("could not retire ledger owner: %s", type(exc).__name__)
        self.pool.close()
