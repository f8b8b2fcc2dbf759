"""In-memory doubles for the CRM unit tests: a scripted backend and a clock moved by hand."""

from __future__ import annotations

import asyncio

from udfs.crm.base import LookupResult


class FakeClock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class ScriptedLookup:
    """Answers from `results` (user_id -> LookupResult; `missing` otherwise) and counts calls.
    `gate`, when set, holds every `alookup` until the test opens it."""

    def __init__(self, results: dict[str, LookupResult] | None = None):
        self.results = dict(results or {})
        self.calls: list[str] = []
        self.gate: asyncio.Event | None = None
        self.closed = False

    def lookup(self, user_id: str) -> LookupResult:
        self.calls.append(user_id)
        return self.results.get(user_id, LookupResult("missing"))

    async def alookup(self, user_id: str) -> LookupResult:
        self.calls.append(user_id)
        if self.gate is not None:
            await self.gate.wait()
        return self.results.get(user_id, LookupResult("missing"))

    def close(self) -> None:
        self.closed = True
