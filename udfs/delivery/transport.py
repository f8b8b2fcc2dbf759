"""HTTP transport for the adapters' request descriptions: stdlib http.client, one keep-alive
connection per thread and host."""

from __future__ import annotations

import http.client
import threading
from urllib.parse import urlsplit

from udfs.vendors.http import HttpRequest, HttpResponse


class TransportError(Exception):
    """No HTTP response: timeout, refused or dropped connection. Always worth a retry.
    `maybe_sent` is False only when no byte of the request left (the connection never opened):
    otherwise the vendor may have accepted it."""

    def __init__(self, kind: str, detail: str, maybe_sent: bool = True):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.maybe_sent = maybe_sent


class HttpTransport:
    def __init__(self, timeout_s: float = 10.0):
        self.timeout_s = timeout_s
        self._local = threading.local()

    def _connection(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        pool: dict = self._local.__dict__.setdefault("pool", {})
        key = (scheme, netloc)
        connection = pool.get(key)
        if connection is None:
            factory = (
                http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
            )
            connection = factory(netloc, timeout=self.timeout_s)
            pool[key] = connection
        return connection

    def _discard(self, scheme: str, netloc: str) -> None:
        connection = self._local.__dict__.get("pool", {}).pop((scheme, netloc), None)
        if connection is not None:
            connection.close()

    def send(self, request: HttpRequest) -> HttpResponse:
        parts = urlsplit(request.url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        connection = self._connection(parts.scheme, parts.netloc)
        if connection.sock is None:
            try:
                connection.connect()
            except OSError as exc:
                self._discard(parts.scheme, parts.netloc)
                kind = "timeout" if isinstance(exc, TimeoutError) else "connection"
                raise TransportError(kind, f"cannot connect: {type(exc).__name__}", False) from exc
        try:
            connection.request(request.method, target, body=request.body, headers=request.headers)
            raw = connection.getresponse()
            body = raw.read()
        except TimeoutError as exc:
            self._discard(parts.scheme, parts.netloc)
            raise TransportError("timeout", f"no response within {self.timeout_s}s") from exc
        except (http.client.HTTPException, OSError) as exc:
            self._discard(parts.scheme, parts.netloc)
            raise TransportError("connection", type(exc).__name__) from exc
        headers = {name.lower(): value for name, value in raw.getheaders()}
        if raw.will_close:
            self._discard(parts.scheme, parts.netloc)
        return HttpResponse(status=raw.status, body=body, headers=headers)

    def close(self) -> None:
        for connection in self._local.__dict__.get("pool", {}).values():
            connection.close()
        self._local.__dict__["pool"] = {}
