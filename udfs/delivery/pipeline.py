"""From raw records (a Kafka message value or a JSONL line) to final outcomes and dead letters.

Shared by `moments deliver` on a topic and on a file, and by `moments redrive`, so all behave the
same: a record that is not a valid action is dead-lettered with the reason, never dropped; an
(action, destination) the ledger holds as accepted is never sent again, by any replica, after any
restart; one another replica is sending is waited for, not sent twice.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from schemas.action import Action
from udfs.delivery.deliverer import VENDOR_DESTINATIONS, Deliverer, DeliveryResult
from udfs.delivery.ledger import Claim, Key

RESPONSE_LIMIT_BYTES = 8192
# How often a claim on keys another replica holds is tried again (it finishes or dies).
BUSY_POLL_S = 0.2


@dataclass(frozen=True)
class SourceRecord:
    value: bytes
    position: dict[str, Any]  # {"topic", "partition", "offset"} or {"file", "line"}


@dataclass
class BatchOutcome:
    dead_letters: list[tuple[bytes | None, bytes]] = field(default_factory=list)  # (key, value)
    dead_keys: list[Key] = field(default_factory=list)  # for the ledger, once letters are durable
    finished: list[bool] = field(default_factory=list)  # per input record, same order
    delivered: int = 0
    skipped_duplicates: int = 0  # records with a destination the ledger already held final


Parse = Callable[[bytes], tuple[Action | None, str]]


class DeliveryPipeline:
    """`redrive`: claim dead-lettered keys too (`moments redrive`); `parse` turns a record into
    an action (the action contract by default)."""

    def __init__(
        self,
        deliverer: Deliverer,
        stop: threading.Event | None = None,
        redrive: bool = False,
        parse: Parse | None = None,
    ):
        self.deliverer = deliverer
        self.ledger = deliverer.ledger
        self.stop = stop or deliverer.stop
        self.redrive = redrive
        self._parse = parse or _parse

    def process(self, records: Sequence[SourceRecord]) -> BatchOutcome:
        outcome = BatchOutcome()
        self.deliverer.metrics.batch_records.observe(len(records))
        parsed: list[tuple[Action, list[Key]] | None] = []
        for record in records:
            action, error = self._parse(record.value)
            if action is None:
                outcome.dead_letters.append((None, _invalid_record(record, error)))
                self.deliverer.metrics.dead_lettered.labels("none", "none").inc()
                parsed.append(None)
                continue
            keys = [(action.action_id, d) for d in action.destinations if d in VENDOR_DESTINATIONS]
            parsed.append((action, keys))
        claim = self._claim({key for item in parsed if item for key in item[1]})
        final = claim.accepted | claim.dead
        for result in self.deliverer.deliver(self._to_send(parsed, claim, outcome)):
            if result.finished:
                final.add((result.action.action_id, result.destination))
                self._count(result, outcome)
        outcome.finished = [item is None or all(k in final for k in item[1]) for item in parsed]
        return outcome

    def _claim(self, keys: set[Key]) -> Claim:
        """Claim the keys; those another live replica holds are asked for again until it lets
        go (accepted, or its heartbeat stops) or this job stops (then they stay unfinished)."""
        claim = self.ledger.claim(keys, redrive=self.redrive)
        while claim.busy and not self.stop.wait(BUSY_POLL_S):
            again = self.ledger.claim(claim.busy, redrive=self.redrive)
            claim.busy = again.busy
            claim.granted |= again.granted
            claim.accepted |= again.accepted
            claim.dead |= again.dead
        for action_id, destination in claim.accepted | claim.dead:
            state = "accepted" if (action_id, destination) in claim.accepted else "dead"
            self.deliverer.metrics.skipped.labels(destination, state).inc()
        return claim

    def _to_send(self, parsed, claim: Claim, outcome: BatchOutcome) -> list[Action]:
        """Each action once per batch, with only its destinations granted to this replica."""
        actions: list[Action] = []
        scheduled: set[Key] = set()
        for item in parsed:
            if item is None:
                continue
            action, keys = item
            if any(k in claim.accepted or k in claim.dead or k in scheduled for k in keys):
                outcome.skipped_duplicates += 1
            wanted = [d for a, d in keys if (a, d) in claim.granted and (a, d) not in scheduled]
            if wanted:
                actions.append(action.model_copy(update={"destinations": wanted}))
                scheduled.update((action.action_id, d) for d in wanted)
        return actions

    def _count(self, result: DeliveryResult, outcome: BatchOutcome) -> None:
        if result.delivered:
            outcome.delivered += 1
            return
        outcome.dead_letters.append((result.action.action_id.encode(), dead_letter(result)))
        outcome.dead_keys.append((result.action.action_id, result.destination))
        self.deliverer.metrics.dead_lettered.labels(
            result.destination, result.endpoint or "none"
        ).inc()

    def letters_durable(self, outcome: BatchOutcome) -> None:
        """The batch's dead letters are durable: the ledger may now hold those keys as dead (a
        crash before this re-sends them, and at worst dead-letters them twice)."""
        if outcome.dead_keys:
            self.ledger.dead(outcome.dead_keys)


def _parse(value: bytes) -> tuple[Action | None, str]:
    try:
        return Action.model_validate_json(value), ""
    except ValidationError as exc:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ())) or "record"
        return None, f"not a valid action: {where}: {first.get('msg', str(exc))}"


def _invalid_record(record: SourceRecord, reason: str) -> bytes:
    try:
        raw: Any = record.value.decode("utf-8")
        encoding = "utf-8"
    except UnicodeDecodeError:
        raw, encoding = base64.b64encode(record.value).decode(), "base64"
    return _dumps(
        {
            "action": None,
            "raw": raw,
            "raw_encoding": encoding,
            "destination": None,
            "status": None,
            "reason": reason,
            "attempts": 0,
            "source": record.position,
            "failed_at": int(time.time() * 1000),
        }
    )


def dead_letter(result: DeliveryResult) -> bytes:
    """The delivery dead-letter record: the action as received, where it was going, what the vendor
    said (status and body, truncated to 8 KiB), how many sends were made."""
    response = result.response
    if len(response.encode()) > RESPONSE_LIMIT_BYTES:
        response = response.encode()[:RESPONSE_LIMIT_BYTES].decode("utf-8", errors="ignore")
    return _dumps(
        {
            "action": json.loads(result.action.to_json_bytes()),
            "destination": result.destination,
            "endpoint": result.endpoint or None,
            "status": result.status,
            "response": response,
            "reason": result.reason,
            "attempts": result.attempts,
            "failed_at": int(time.time() * 1000),
        }
    )


def _dumps(document: dict) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
