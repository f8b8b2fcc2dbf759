"""The local infrastructure itself: a Kafka round trip and the seeded CRM database."""

from __future__ import annotations

from collections import defaultdict

import psycopg
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from tests.helpers import wait_for

pytestmark = pytest.mark.integration

MESSAGES = 60
PARTITIONS = 2


def test_kafka_returns_exactly_what_was_produced_in_order_per_partition(
    kafka_bootstrap, kafka_topic
):
    topic = kafka_topic(partitions=PARTITIONS)
    sent = [(f"u-{i % 7}".encode(), f"event-{i}".encode()) for i in range(MESSAGES)]

    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", linger_ms=5)
    try:
        futures = [producer.send(topic, key=key, value=value) for key, value in sent]
        placed = [future.get(timeout=30) for future in futures]
    finally:
        producer.close()
    expected: dict[int, list[tuple[bytes, bytes]]] = defaultdict(list)
    for (key, value), metadata in zip(sent, placed, strict=True):
        expected[metadata.partition].append((key, value))
    assert len(expected) == PARTITIONS, "the keys should spread over both partitions"

    consumer = KafkaConsumer(
        bootstrap_servers=kafka_bootstrap, enable_auto_commit=False, group_id=None
    )
    partitions = [TopicPartition(topic, partition) for partition in range(PARTITIONS)]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    received: dict[int, list[tuple[bytes, bytes]]] = defaultdict(list)

    def everything_received() -> bool:
        for records in consumer.poll(timeout_ms=500).values():
            for record in records:
                received[record.partition].append((record.key, record.value))
        return sum(map(len, received.values())) >= MESSAGES

    try:
        wait_for(everything_received, timeout=30, message=f"{MESSAGES} records from {topic}")
        assert not consumer.poll(timeout_ms=500), "more records than were produced"
    finally:
        consumer.close()
    assert dict(received) == dict(expected)
    partitions_of_key: dict[bytes, set[int]] = defaultdict(set)
    for partition, records in received.items():
        for key, _ in records:
            partitions_of_key[key].add(partition)
    assert all(len(found_in) == 1 for found_in in partitions_of_key.values())


def test_crm_database_holds_the_seed_and_no_unknown_users(crm_dsn):
    with psycopg.connect(crm_dsn, connect_timeout=10) as conn:
        known = conn.execute(
            "SELECT email, segment, first_name FROM crm_profiles WHERE user_id = %s", ("u-1",)
        ).fetchone()
        unknown = conn.execute(
            "SELECT 1 FROM crm_profiles WHERE user_id = %s", ("u-401",)
        ).fetchone()
    assert known == ("user1@example.com", "vip", "Ada")
    assert unknown is None
