"""From raw records (a Kafka message value or a JSONL line) to final outcomes and dead letters.

Shared by `moments deliver` on a topic and on a file, so both behave the same: a record that is not
a valid action is dead-lettered with the reason, never dropped; an action seen again (at-least-once
upstream, replays) is not sent twice to the same destination by this process.
"""

from __future__ import annotations

import base64
import json
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from schemas.action import Action
from udfs.delivery.deliverer import VENDOR_DESTINATIONS, Deliverer, DeliveryResult

RESPONSE_LIMIT_BYTES = 8192


@dataclass(frozen=True)
class SourceRecord:
    value: bytes
    position: dict[str, Any]  # {"topic", "partition", "offset"} or {"file", "line"}


@dataclass
class BatchOutcome:
    dead_letters: list[tuple[bytes | None, bytes]] = field(default_factory=list)  # (key, value)
    finished: list[bool] = field(default_factory=list)  # per input record, same order
    delivered: int = 0
    skipped_duplicates: int = 0


class DeliveryPipeline:
    def __init__(self, deliverer: Deliverer, remember: int = 200_000):
        self.deliverer = deliverer
        self._remember = remember
        # (action_id, destination) pairs with a final outcome, most recent last.
        self._done: OrderedDict[tuple[str, str], None] = OrderedDict()

    def process(self, records: Sequence[SourceRecord]) -> BatchOutcome:
        outcome = BatchOutcome()
        actions: list[Action] = []
        keys_of_record: list[list[tuple[str, str]]] = []
        scheduled: set[tuple[str, str]] = set()
        for record in records:
            action, error = _parse(record.value)
            if action is None:
                outcome.dead_letters.append((None, _invalid_record(record, error)))
                keys_of_record.append([])
                continue
            keys = [(action.action_id, d) for d in action.destinations if d in VENDOR_DESTINATIONS]
            keys_of_record.append(keys)
            fresh = [d for d in action.destinations if (action.action_id, d) not in self._done]
            fresh = [d for d in fresh if (action.action_id, d) not in scheduled]
            if len(fresh) < len(action.destinations):
                outcome.skipped_duplicates += 1
            wanted = [d for d in fresh if d in VENDOR_DESTINATIONS]
            if wanted:
                actions.append(action.model_copy(update={"destinations": wanted}))
                scheduled.update((action.action_id, d) for d in wanted)
        final: set[tuple[str, str]] = set()
        for result in self.deliverer.deliver(actions):
            if not result.finished:
                continue
            key = (result.action.action_id, result.destination)
            final.add(key)
            self._remember_done(key)
            if result.delivered:
                outcome.delivered += 1
            else:
                outcome.dead_letters.append((result.action.action_id.encode(), dead_letter(result)))
        outcome.finished = [
            all(key in final or key in self._done for key in keys) for keys in keys_of_record
        ]
        return outcome

    def _remember_done(self, key: tuple[str, str]) -> None:
        self._done[key] = None
        self._done.move_to_end(key)
        while len(self._done) > self._remember:
            self._done.popitem(last=False)


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
