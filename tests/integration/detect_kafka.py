"""Helpers for the Kafka tests of `moments run`: topics, a running job, readers, metrics."""

from __future__ import annotations

import json
from pathlib import Path

from moments_testing.flink_job import (  # noqa: F401 - re-exported: the Kafka tests import here
    RunningJob,
    create_topics,
    free_port,
)

ROOT = Path(__file__).resolve().parents[2]


def kafka_args(bootstrap: str, topics: dict[str, str], rules, group: str = "detect") -> list[str]:
    """The `moments run` flags every Kafka test shares: rules, broker, the four topics, a group
    of its own, reading from the earliest offsets."""
    return [
        "--rules", str(rules), "--bootstrap-servers", bootstrap,
        "--events-topic", topics["events"], "--actions-topic", topics["actions"],
        "--dlq-topic", topics["dlq"], "--late-topic", topics["late"],
        "--group-id", f"{group}-{topics['events']}", "--starting-offsets", "earliest",
    ]  # fmt: skip


def produce(bootstrap: str, topic: str, lines: list[str], **producer_config) -> None:
    """Each line as one record, keyed by user_id when it has one (per-user order is kept);
    `producer_config`: more KafkaProducer settings (e.g. max_request_size). Idempotent: a batch
    retried after an error (e.g. NotLeaderForPartition on a loaded broker) is neither written
    twice nor behind the batches sent after it, which would make events late for the job."""
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=5,
        enable_idempotence=True,
        **producer_config,
    )
    for line in lines:
        try:
            key = json.loads(line).get("user_id")
        except (ValueError, AttributeError):
            key = None
        producer.send(topic, line.encode(), key=key.encode() if isinstance(key, str) else None)
    producer.flush()
    producer.close()


class TopicReader:
    """Accumulates every committed record of a topic; `poll()` reads what is new."""

    def __init__(self, bootstrap: str, topic: str):
        from kafka import KafkaConsumer

        self.consumer = KafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            isolation_level="read_committed",
            group_id=None,
        )
        self.records: list = []

    def poll(self) -> list:
        for batch in self.consumer.poll(timeout_ms=200).values():
            self.records.extend(batch)
        return self.records

    def values(self) -> list[dict]:
        return [json.loads(r.value) for r in self.records]

    def close(self) -> None:
        self.consumer.close()


def wait_for_backlog(job: RunningJob, actions: TopicReader, expected: int) -> list:
    """Poll the actions topic until the backlog's `expected` actions are there (the job must
    stay alive meanwhile); the records read so far."""
    from tests.helpers import wait_for

    def backlog_done():
        assert job.alive(), job.log_tail()
        return len(actions.poll()) >= expected

    wait_for(backlog_done, timeout=120, interval=0.5, message="actions of the backlog")
    return list(actions.records)


def tear_down(job: RunningJob, readers: dict[str, TopicReader], admin, topics: dict[str, str]):
    """The end of a Kafka-mode fixture: the job, its topic readers, its topics."""
    job.stop()
    for reader in readers.values():
        reader.close()
    admin.delete_topics(list(topics.values()))
