"""A strict local vendor server: loopback, port 0, one thread per connection, HTTP/1.1 keep-alive.

Subclasses validate requests like the vendor does; this base adds what tests need on top: fault
injection (500s, slow responses past the client timeout, dropped connections), fixed-window rate
limits per endpoint, and a record of what was accepted, per action_id, to count duplicates.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Faults:
    """Per-request probabilities, drawn from a seeded RNG. `slow` and `drop_after` happen *after*
    the request was accepted (the client cannot know: the source of duplicates); `error_500` and
    `drop_before` before (nothing accepted)."""

    error_500: float = 0.0
    slow: float = 0.0
    slow_s: float = 2.0
    drop_before: float = 0.0
    drop_after: float = 0.0
    seed: int = 7
    # Deterministic faults for the next requests, consumed in order: "500", "slow", "drop_before",
    # "drop_after", "429".
    queue: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class Rejection(Exception):
    def __init__(self, reply: Reply):
        super().__init__(reply.status)
        self.reply = reply


class VendorServer:
    """Start with `with Server(...) as server:`; `server.url` is the base URL."""

    name = "vendor"

    def __init__(
        self,
        api_key: str,
        rate_limits: dict[str, tuple[int, float]] | None = None,
        faults: Faults | None = None,
    ):
        self.api_key = api_key
        self.rate_limits = dict(rate_limits or {})  # endpoint -> (requests, window seconds)
        self.faults = faults or Faults()
        self._rng = random.Random(self.faults.seed)
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[int, int]] = {}  # endpoint -> (window index, count)
        self.accepted: Counter = Counter()  # action_id -> times accepted
        self.accepted_items: dict[str, dict] = {}  # action_id -> last accepted item
        self.statuses: Counter = Counter()  # status or fault name -> count
        self.requests = 0
        self.bodies: list[tuple[str, Any]] = []  # (path, parsed body) of accepted requests
        self.arrivals: dict[str, list[float]] = {}  # endpoint -> arrival times, every request
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    def __enter__(self) -> VendorServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                server._handle(self)

            def do_GET(self) -> None:
                server._handle(self)

            def do_PUT(self) -> None:
                server._handle(self)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    @property
    def url(self) -> str:
        assert self._httpd is not None
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    # -- what tests read -----------------------------------------------------------------------
    def delivered_ids(self) -> set[str]:
        with self._lock:
            return set(self.accepted)

    def duplicates(self) -> int:
        with self._lock:
            return sum(count - 1 for count in self.accepted.values())

    def peak_rate(self, endpoint: str, window_s: float) -> dict[str, int]:
        """The most requests that arrived at `endpoint` (answered or not) in any window of
        `window_s`: sliding (any start) and fixed (aligned to the wall clock, as counted here)."""
        with self._lock:
            times = sorted(self.arrivals.get(endpoint, []))
        sliding, first = 0, 0
        for last, arrived in enumerate(times):
            while arrived - times[first] >= window_s:
                first += 1
            sliding = max(sliding, last - first + 1)
        fixed = Counter(int(arrived // window_s) for arrived in times)
        return {"sliding": sliding, "fixed": max(fixed.values(), default=0)}

    # -- subclass API --------------------------------------------------------------------------
    def endpoint_for(self, method: str, path: str) -> str:
        """The rate-limit key of a path; raise Rejection for unknown paths / methods."""
        raise NotImplementedError

    def check_auth(self, headers) -> None:
        raise NotImplementedError

    def process(self, endpoint: str, path: str, body: Any) -> tuple[Reply, list[dict]]:
        """Validate a parsed body; return the reply and the accepted items (each with an
        `action_id`). Raise Rejection for a request-level error."""
        raise NotImplementedError

    def rate_limited(self, endpoint: str, limit: int, reset_epoch_s: int) -> Reply:
        raise NotImplementedError

    def server_error(self) -> Reply:
        raise NotImplementedError

    def rate_headers(self, limit: int, remaining: int, reset_epoch_s: int) -> dict[str, str]:
        return {}

    def bad_content_type(self) -> Reply:
        raise NotImplementedError

    def bad_json(self) -> Reply:
        raise NotImplementedError

    # -- request handling ----------------------------------------------------------------------
    def _next_fault(self) -> str | None:
        with self._lock:
            if self.faults.queue:
                return self.faults.queue.pop(0)
            draw = self._rng.random()
            for name, probability in (
                ("500", self.faults.error_500),
                ("slow", self.faults.slow),
                ("drop_before", self.faults.drop_before),
                ("drop_after", self.faults.drop_after),
            ):
                if draw < probability:
                    return name
                draw -= probability
        return None

    def _take_rate_slot(self, endpoint: str) -> tuple[bool, int, int, int]:
        """Fixed windows aligned to the wall clock: (allowed, limit, remaining, reset epoch s)."""
        if endpoint not in self.rate_limits:
            return True, 0, 0, 0
        limit, window_s = self.rate_limits[endpoint]
        now = time.time()
        index = int(now // window_s)
        reset = math.ceil((index + 1) * window_s)
        with self._lock:
            current, count = self._windows.get(endpoint, (index, 0))
            if current != index:
                count = 0
            if count >= limit:
                self._windows[endpoint] = (index, count)
                return False, limit, 0, reset
            self._windows[endpoint] = (index, count + 1)
            return True, limit, limit - count - 1, reset

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.requests += 1
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        path = handler.path.split("?", 1)[0]
        try:
            endpoint = self.endpoint_for(handler.command, path)
            with self._lock:
                self.arrivals.setdefault(endpoint, []).append(time.time())
            self.check_auth(handler.headers)
            fault = self._next_fault()
            if fault == "429":
                _, limit, _, reset = self._take_rate_slot(endpoint)
                raise Rejection(self.rate_limited(endpoint, limit or 1, reset or int(time.time())))
            if fault == "drop_before":
                self._count("drop_before")
                self._drop(handler)
                return
            if fault == "500":
                raise Rejection(self.server_error())
            allowed, limit, remaining, reset = self._take_rate_slot(endpoint)
            if not allowed:
                raise Rejection(self.rate_limited(endpoint, limit, reset))
            content_type = (handler.headers.get("Content-Type") or "").split(";")[0].strip()
            if content_type.lower() != "application/json":
                raise Rejection(self.bad_content_type())
            try:
                body = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                raise Rejection(self.bad_json()) from None
            reply, items = self.process(endpoint, path, body)
            if limit:
                reply.headers.update(self.rate_headers(limit, remaining, reset))
            with self._lock:
                self.bodies.append((path, body))
                for item in items:
                    self.accepted[item["action_id"]] += 1
                    self.accepted_items[item["action_id"]] = item
            if fault == "drop_after":
                self._count("drop_after")
                self._drop(handler)
                return
            if fault == "slow":
                self._count("slow")
                time.sleep(self.faults.slow_s)
        except Rejection as rejection:
            reply = rejection.reply
        self._count(reply.status)
        self._reply(handler, reply)

    def _count(self, key: Any) -> None:
        with self._lock:
            self.statuses[key] += 1

    @staticmethod
    def _drop(handler: BaseHTTPRequestHandler) -> None:
        handler.close_connection = True
        try:
            handler.connection.shutdown(2)
        except OSError:
            pass

    @staticmethod
    def _reply(handler: BaseHTTPRequestHandler, reply: Reply) -> None:
        payload = json.dumps(reply.body).encode()
        try:
            handler.send_response(reply.status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(payload)))
            for name, value in reply.headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(payload)
        except OSError:
            handler.close_connection = True  # the client gave up (timeout) and closed
