"""Readiness check and topic creation for the local broker; deploy/local/kafka.sh calls it.

`ensure-topics` waits until the broker answers a metadata request, then creates the topics of
jobs/settings.py ALL_TOPICS that do not exist yet and waits until each has a leader.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from jobs.settings import ALL_TOPICS, TOPIC_CONFIGS


def parse_partitions(spec: str) -> dict[str, int]:
    """`"moments.events=2,moments.actions=2"` -> {topic: partitions}; other topics get 1."""
    partitions = dict.fromkeys(ALL_TOPICS, 1)
    for item in filter(None, (part.strip() for part in spec.split(","))):
        topic, _, count = item.partition("=")
        if not count.isdigit() or int(count) < 1:
            raise SystemExit(f"kafka_admin: bad partitions entry {item!r} (want topic=N, N >= 1)")
        partitions[topic.strip()] = int(count)
    return partitions


def process_alive(pid: int | None) -> bool:
    if pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def connect(bootstrap: str, deadline: float, watch_pid: int | None) -> KafkaAdminClient:
    """An admin client once the broker answers a metadata request; exits if it never does."""
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if not process_alive(watch_pid):
            raise SystemExit(f"kafka_admin: the broker process {watch_pid} exited during start-up")
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=bootstrap,
                client_id="micro-moments-local-setup",
                request_timeout_ms=5000,
                api_version_auto_timeout_ms=2000,
            )
            admin.list_topics()
            return admin
        except (KafkaError, OSError, ValueError) as error:
            last_error = error
            time.sleep(0.5)
    raise SystemExit(f"kafka_admin: no answer from {bootstrap} ({last_error!r})")


def ensure_topics(admin: KafkaAdminClient, partitions: dict[str, int], deadline: float) -> None:
    existing = set(admin.list_topics())
    missing = [
        NewTopic(
            name=topic,
            num_partitions=count,
            replication_factor=1,
            topic_configs=TOPIC_CONFIGS.get(topic, {}),
        )
        for topic, count in partitions.items()
        if topic not in existing
    ]
    for new_topic in missing:
        try:
            admin.create_topics([new_topic], timeout_ms=10000)
            print(f"kafka: created topic {new_topic.name} ({new_topic.num_partitions} partitions)")
        except TopicAlreadyExistsError:
            pass
    while time.monotonic() < deadline:
        described = admin.describe_topics(list(partitions))
        led = {
            topic["topic"]
            for topic in described
            if topic["error_code"] == 0
            and topic["partitions"]
            and all(partition["leader"] >= 0 for partition in topic["partitions"])
        }
        if led >= set(partitions):
            return
        time.sleep(0.2)
    raise SystemExit(f"kafka_admin: topics without a leader: {sorted(set(partitions) - led)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["ensure-topics"])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds, for all of it")
    parser.add_argument("--watch-pid", type=int, help="give up early if this process exits")
    parser.add_argument("--partitions", default="", help="topic=N,... (others: 1)")
    args = parser.parse_args(argv)

    # kafka-python logs every refused connection while the broker boots: expected noise here.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    deadline = time.monotonic() + args.timeout
    admin = connect(args.bootstrap, deadline, args.watch_pid)
    try:
        ensure_topics(admin, parse_partitions(args.partitions), deadline)
    finally:
        admin.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
