"""Helpers for the Kafka tests of `moments run`: topics, a running job, readers, metrics."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def create_topics(
    admin, prefix: str, partitions: dict[str, int], configs: dict[str, dict[str, str]] | None = None
) -> dict[str, str]:
    """Topics of their own for one test run, `{role: name}`; `configs`: topic configs by role."""
    from kafka.admin import NewTopic

    run = uuid.uuid4().hex[:8]
    names = {role: f"test.{prefix}.{run}.{role}" for role in partitions}
    configs = configs or {}
    admin.create_topics(
        [
            NewTopic(names[role], count, 1, topic_configs=configs.get(role, {}))
            for role, count in partitions.items()
        ],
        timeout_ms=30000,
    )
    return names


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
    `producer_config`: more KafkaProducer settings (e.g. max_request_size)."""
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, **producer_config
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


class RunningJob:
    """`moments run` in a subprocess (its own process group, so stopping it stops its JVM)."""

    def __init__(self, args: list[str], log_path: Path):
        self.rest_port = free_port()
        env = dict(os.environ)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        self.log_path = log_path
        self.log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jobs.cli", "run", *args, "--rest-port", str(self.rest_port)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def _get(self, path: str):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.rest_port}{path}", timeout=5) as r:
            return json.loads(r.read())

    def job_id(self) -> str | None:
        jobs = [j for j in self._get("/jobs")["jobs"] if j["status"] == "RUNNING"]
        return jobs[0]["id"] if jobs else None

    def metrics(self) -> dict[str, float]:
        """Every user metric of the job summed over subtasks, e.g. {"detect.events_in": 12}."""
        return self.metrics_matching(("decode.", "detect.", "enrich.", "activity."))

    @staticmethod
    def records_in(metrics: dict[str, float]) -> float:
        """Records the job took in Kafka mode: those the detect operator got, and those the JVM
        activity filter skipped or holds (udfs/jvm CollapseActivity)."""
        names = ("detect.events_in", "activity.skipped", "activity.held")
        return sum(metrics.get(name, 0) for name in names)

    def metrics_matching(self, prefixes: tuple[str, ...], suffix: str = "") -> dict[str, float]:
        """Metrics whose id starts with one of `prefixes` and ends with `suffix`, summed."""
        job = self.job_id()
        totals: dict[str, float] = {}
        for vertex in self._get(f"/jobs/{job}")["vertices"]:
            base = f"/jobs/{job}/vertices/{vertex['id']}/subtasks/metrics"
            names = [
                m["id"]
                for m in self._get(base)
                if m["id"].startswith(prefixes) and m["id"].endswith(suffix)
            ]
            if names:
                query = urllib.parse.quote(",".join(names), safe=",")
                for m in self._get(f"{base}?get={query}&agg=sum"):
                    totals[m["id"]] = m["sum"]
        return totals

    def metric_min(self, name: str) -> float | None:
        """The lowest value of metric `name` over the subtasks that report it (e.g.
        `detect.currentInputWatermark`: the watermark every detect subtask has reached)."""
        job = self.job_id()
        values = []
        for vertex in self._get(f"/jobs/{job}")["vertices"]:
            base = f"/jobs/{job}/vertices/{vertex['id']}/subtasks/metrics"
            if any(m["id"] == name for m in self._get(base)):
                values += [m["min"] for m in self._get(f"{base}?get={name}&agg=min")]
        return min(values) if values else None

    def checkpoints_completed(self) -> int:
        job = self.job_id()
        return self._get(f"/jobs/{job}/checkpoints")["counts"]["completed"] if job else 0

    def stop(self, kill: bool = False) -> None:
        if self.alive():
            os.killpg(self.process.pid, signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
        self.log.close()


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
