"""The delivery ledger: a durable record, per (action_id, destination), of what a vendor accepted,
consulted before every send so a restart, a rebalance or a re-read never sends an accepted action
again. `PostgresLedger` is shared by every replica; `MemoryLedger` is the same protocol for one
process (no database configured, unit tests).

A key is claimed by one owner (a running process) before it is sent; `sending` marks it as on the
wire before each HTTP attempt (before its rate-limit wait, so the send follows its slot at once;
a stop during the wait clears the mark), and the vendor's answer makes it `accepted`, back to
not-sent (a definite refusal), or leaves it sent (a timeout or dropped connection: the vendor may
have accepted it). A key sent again while marked sent is counted as ambiguous: the only way a
duplicate can reach a vendor (an upper bound: a replica killed during a wait never sent it).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

Key = tuple[str, str]  # (action_id, destination)


@dataclass
class Claim:
    """What a claim found: keys now ours to send, keys already final, keys another live replica
    is sending right now (wait for it)."""

    granted: set[Key] = field(default_factory=set)
    accepted: set[Key] = field(default_factory=set)
    dead: set[Key] = field(default_factory=set)
    busy: set[Key] = field(default_factory=set)


class Ledger(Protocol):
    owner: str

    def claim(self, keys: Iterable[Key], redrive: bool = False) -> Claim:
        """Take the keys not yet final (with `redrive`, dead-lettered ones too)."""
        ...

    def sending(self, keys: Iterable[Key]) -> tuple[bool, set[Key]]:
        """Mark keys as on the wire: (all still ours, the keys already marked sent)."""
        ...

    def unsent(self, keys: Iterable[Key]) -> None:
        """The vendor refused them (a definite answer): a later send is not ambiguous."""
        ...

    def accepted(self, keys: Iterable[Key]) -> None: ...

    def dead(self, keys: Iterable[Key]) -> None:
        """Dead-lettered (called once the dead letters are durable)."""
        ...

    def close(self) -> None: ...


@dataclass
class _Entry:
    state: str = "pending"  # pending | accepted | dead
    sent: bool = False
    ambiguous: int = 0


class MemoryLedger:
    """One process's ledger, bounded to the `remember` most recent keys: it stops this process from
    sending twice, nothing more (a restart forgets)."""

    owner = "this-process"

    def __init__(self, remember: int = 200_000):
        self._remember = remember
        self._entries: OrderedDict[Key, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def claim(self, keys: Iterable[Key], redrive: bool = False) -> Claim:
        claim = Claim()
        with self._lock:
            for key in keys:
                entry = self._entries.setdefault(key, _Entry())
                self._entries.move_to_end(key)
                if entry.state == "accepted":
                    claim.accepted.add(key)
                elif entry.state == "dead" and not redrive:
                    claim.dead.add(key)
                else:
                    entry.state = "pending"
                    claim.granted.add(key)
            while len(self._entries) > self._remember:
                self._entries.popitem(last=False)
        return claim

    def sending(self, keys: Iterable[Key]) -> tuple[bool, set[Key]]:
        again = set()
        with self._lock:
            for key in keys:
                entry = self._entries.setdefault(key, _Entry())
                if entry.sent:
                    again.add(key)
                entry.ambiguous += entry.sent
                entry.sent = True
        return True, again

    def _set(self, keys: Iterable[Key], state: str | None) -> None:
        with self._lock:
            for key in keys:
                entry = self._entries.setdefault(key, _Entry())
                entry.sent = False
                if state is not None and entry.state != "accepted":
                    entry.state = state

    def unsent(self, keys: Iterable[Key]) -> None:
        self._set(keys, None)

    def accepted(self, keys: Iterable[Key]) -> None:
        self._set(keys, "accepted")

    def dead(self, keys: Iterable[Key]) -> None:
        self._set(keys, "dead")

    def ambiguous_total(self) -> int:
        with self._lock:
            return sum(entry.ambiguous for entry in self._entries.values())

    def close(self) -> None:
        pass
