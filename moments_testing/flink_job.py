"""A `moments run` job started for a test or a benchmark run: its topics, its process (a group of
its own), and what its REST API says (job id, metrics summed over subtasks, checkpoints)."""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

from moments_testing.launcher import start_moments, stop_group


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
    wait_for_leaders(admin, {names[role]: partitions[role] for role in names})
    return names


def has_leaders(admin, topic: str, partitions: int | None = None) -> bool:
    """Whether the broker reports `topic` with a leader for each of its (`partitions`, if
    given) partitions: a record sent before that is answered NotLeaderForPartition and retried
    (on a loaded broker, seconds later)."""
    [described] = admin.describe_topics([topic])
    found = described["partitions"]
    return (
        described["error_code"] == 0
        and bool(found)
        and (partitions is None or len(found) == partitions)
        and all(partition["leader"] >= 0 for partition in found)
    )


def wait_for_leaders(admin, topics: dict[str, int], timeout_s: float = 30) -> None:
    """Until `has_leaders` holds for every `{topic: partitions}`."""
    deadline = time.monotonic() + timeout_s
    while not all(has_leaders(admin, topic, count) for topic, count in topics.items()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no leader after {timeout_s}s for some partitions of {topics}")
        time.sleep(0.1)


class RunningJob:
    """`moments run` in a subprocess (its own process group, so stopping it stops its JVM)."""

    def __init__(self, args: list[str], log_path: Path):
        self.rest_port = free_port()
        self.log_path = log_path
        # The job's own log (Flink's and its operators' Python logging) goes to a directory of
        # its own rather than PyFlink's shared one, which each local job overwrites.
        self.flink_log_dir = log_path.with_name(f"{log_path.stem}-flink-log")
        self.flink_log_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "FLINK_LOG_DIR": str(self.flink_log_dir)}
        self.log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.process = start_moments(
            ["run", *args, "--rest-port", str(self.rest_port)], self.log, env=env
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        """The end of the command's output, then the warnings and errors of the job's log."""
        tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        for path in sorted(self.flink_log_dir.glob("*.log")):
            problems = [
                line
                for line in path.read_text(errors="replace").splitlines()
                if " WARN " in line or " ERROR " in line or line.startswith(("\t", "Caused by"))
            ]
            tail += [f"--- {path}", *problems[-lines:]]
        return "\n".join(tail)

    def _get(self, path: str):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.rest_port}{path}", timeout=5) as r:
            return json.loads(r.read())

    def job_id(self) -> str | None:
        jobs = [j for j in self._get("/jobs")["jobs"] if j["status"] == "RUNNING"]
        return jobs[0]["id"] if jobs else None

    def vertex_names(self) -> list[str]:
        """The names of the running job's vertices (chained operators joined by Flink)."""
        return [vertex["name"] for vertex in self._get(f"/jobs/{self.job_id()}")["vertices"]]

    def metrics(self) -> dict[str, float]:
        """Every user metric of the job summed over subtasks, e.g. {"detect.events_in": 12}."""
        return self.metrics_matching(("decode.", "detect.", "enrich.", "activity.", "release."))

    @staticmethod
    def records_in(metrics: dict[str, float]) -> float:
        """Records the job took in Kafka mode: the events the detect operator got, those the JVM
        activity filter skipped or holds (udfs/jvm CollapseActivity) and those the release
        operator holds (udfs/jvm ReleaseOnWatermark)."""
        names = ("detect.events_in", "activity.skipped", "activity.held", "release.held")
        return sum(metrics.get(name, 0) for name in names)

    @classmethod
    def counts_add_up(cls, metrics: dict[str, float], records: int) -> bool:
        """The metrics cover `records` (records_in) and add up: detect.events_in = processed +
        invalid + late. A metrics fetch can land inside an element's call, between its events_in
        and its late or invalid count: wait for this, not for records_in alone."""
        parts = sum(metrics.get(f"detect.{n}", 0) for n in ("processed", "invalid", "late"))
        return cls.records_in(metrics) == records and metrics.get("detect.events_in") == parts

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
        stop_group(self.process, kill=kill)
        self.log.close()
