"""Whether the Kafka brokers a job is given answer: checked at start-up, so a wrong address is a
one-line usage error rather than a job that retries forever.
"""

from __future__ import annotations

import socket


def check_bootstrap(servers: str, timeout_s: float = 3.0) -> str:
    """At least one bootstrap server must accept a TCP connection: an unknown broker is a usage
    error up front, not a job that retries forever."""
    addresses = [s.strip() for s in servers.split(",") if s.strip()]
    if not addresses:
        raise ValueError("is empty")
    problems = []
    for address in addresses:
        host, sep, port = address.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"{address!r}: expected host:port")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
                return ",".join(addresses)
        except OSError as error:
            problems.append(f"{address} ({error.strerror or error})")
    raise ValueError(f"no Kafka broker reachable at {', '.join(problems)}")
