"""A local profile API, the HTTP CRM backend's counterpart: loopback, port 0, HTTP/1.1 keep-alive.

`GET {prefix}/profiles/{user_id}` with `Authorization: Bearer <token>`: 200 with the profile as
JSON, 404 for an unknown user, 401 for a missing or wrong token. Tests steer it through `fail_next`
(answer the next n requests with a status, e.g. 500 or 429 with Retry-After), `delay_s` (answer
late) and `profiles`; `requests` counts what reached it.

    with ProfileApiServer(token="t", profiles={"u-1": {"email": "a@b.c"}}) as api:
        HttpProfileLookup(api.url, "t").lookup("u-1")
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote


class ProfileApiServer:
    def __init__(
        self, token: str, profiles: dict[str, dict[str, Any]] | None = None, prefix: str = ""
    ):
        self.token = token
        self.prefix = prefix.rstrip("/")
        self.profiles: dict[str, dict[str, Any]] = dict(profiles or {})
        self.delay_s = 0.0
        self.requests = 0
        self.unauthorized = 0
        self._failures: list[tuple[int, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        # A short poll interval keeps `stop()` (and so each test's teardown) fast.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{self.prefix}"

    def fail_next(self, count: int, status: int = 500, retry_after_s: float | None = None) -> None:
        """The next `count` requests (authorised or not) get `status` instead of an answer."""
        headers = {} if retry_after_s is None else {"Retry-After": f"{retry_after_s:g}"}
        with self._lock:
            self._failures.extend([(status, headers)] * count)

    def _take_failure(self) -> tuple[int, dict[str, str]] | None:
        with self._lock:
            self.requests += 1
            return self._failures.pop(0) if self._failures else None

    def start(self) -> ProfileApiServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._released.set()  # wakes handlers sleeping in `delay_s`
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> ProfileApiServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _handler_for(api: ProfileApiServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes; without this, Nagle and delayed ACKs add 40 ms.
        disable_nagle_algorithm = True

        def do_GET(self) -> None:  # noqa: N802 (the stdlib's naming)
            failure = api._take_failure()
            if api.delay_s:
                api._released.wait(api.delay_s)
            if failure is not None:
                status, headers = failure
                self._send(status, {"error": "injected failure"}, headers)
                return
            if self.headers.get("Authorization") != f"Bearer {api.token}":
                with api._lock:
                    api.unauthorized += 1
                self._send(401, {"error": "missing or invalid bearer token"})
                return
            prefix, _, quoted_id = self.path.rpartition("/")
            if prefix != f"{api.prefix}/profiles" or not quoted_id:
                self._send(404, {"error": "no such route"})
                return
            profile = api.profiles.get(unquote(quoted_id))
            if profile is None:
                self._send(404, {"error": "no such user"})
            else:
                self._send(200, profile)

        def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            payload = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)
            except OSError:
                pass  # the client gave up (its timeout); nothing to answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
