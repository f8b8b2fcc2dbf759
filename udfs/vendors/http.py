"""Descriptions of one HTTP request to a vendor and of its response (no I/O here)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RequestItem:
    """One action inside a request body, in body order.

    `identity` is what the vendor echoes back about a failed item (user id or email): kept in memory
    to map partial failures to actions, never logged.
    """

    action_id: str
    identity: str


@dataclass(frozen=True)
class HttpRequest:
    vendor: str
    endpoint: str  # rate-limit key, e.g. "braze.users_track"
    method: str
    url: str
    path: str
    headers: dict[str, str]
    body: bytes
    items: tuple[RequestItem, ...]

    @property
    def action_ids(self) -> tuple[str, ...]:
        return tuple(item.action_id for item in self.items)


@dataclass(frozen=True)
class HttpResponse:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)  # keys lower-cased

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        """The body as JSON, or None when it is not JSON (an HTML error page, an empty body)."""
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            return None

    def text(self, limit: int = 4096) -> str:
        return self.body[:limit].decode("utf-8", errors="replace")


def json_body(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
