"""Whether the Kafka brokers a job is given answer: checked at start-up, so a wrong address is a
one-line usage error rather than a job that retries forever.
"""

from __future__ import annotations

import socket
import time


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


class TopicReadError(ValueError):
    """A topic that cannot be read to its end: no such topic, or no progress for too long."""


def read_to_end(servers: list[str] | str, topic: str, idle_timeout_s: float = 30.0):
    """(partition, offset, value) of every record of `topic` from its beginning up to its end
    offsets when called, then stop: a snapshot of a topic for a command to read and exit."""
    from kafka import KafkaConsumer, TopicPartition

    if isinstance(servers, str):
        servers = servers.split(",")
    consumer = KafkaConsumer(bootstrap_servers=servers, group_id=None, enable_auto_commit=False)
    try:
        partitions = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        if not partitions:
            raise TopicReadError(f"topic {topic}: no such topic")
        consumer.assign(partitions)
        # Explicit offsets, not seek_to_beginning(): position() then answers at once.
        for tp, offset in consumer.beginning_offsets(partitions).items():
            consumer.seek(tp, offset)
        ends = consumer.end_offsets(partitions)
        last_progress = time.monotonic()
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            polled = consumer.poll(timeout_ms=1000)
            if polled:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > idle_timeout_s:
                raise TopicReadError(
                    f"topic {topic}: nothing read for {idle_timeout_s:.0f} s before its end offsets"
                )
            for tp, records in polled.items():
                for record in records:
                    if record.offset < ends[tp]:
                        yield record.partition, record.offset, record.value or b""
    finally:
        consumer.close()
