"""What bench/run.py drives: the local broker, per-run topics stamped with LogAppendTime, producers
(pre-loaded or paced in real time), topic readers, and Flink jobs in subprocesses observed through
the MiniCluster's REST API and /proc.
"""

from __future__ import annotations

import bisect
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
KAFKA_SH = ROOT / "deploy" / "local" / "kafka.sh"
# Every topic of a run: the broker, not the producer, stamps each record on append, so times on
# the events topic and on the actions topic come from one clock.
TOPIC_CONFIG = {"message.timestamp.type": "LogAppendTime"}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- the broker ------------------------------------------------------------------------------
def ensure_kafka(bootstrap: str) -> bool:
    """Start the local broker unless it (or the given one) answers; True if started here."""
    host, _, port = bootstrap.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return False
    except OSError:
        pass
    if subprocess.run([str(KAFKA_SH), "start"], cwd=ROOT).returncode != 0:
        raise SystemExit("bench: deploy/local/kafka.sh start failed (see .run/kafka/)")
    return True


def stop_kafka() -> None:
    subprocess.run([str(KAFKA_SH), "stop"], cwd=ROOT, check=False)


class Topics:
    """Per-run topics, deleted at the end."""

    def __init__(self, bootstrap: str, run_id: str):
        from kafka.admin import KafkaAdminClient

        self.bootstrap = bootstrap
        self.run_id = run_id
        self.admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="moments-bench")
        self.created: list[str] = []

    def create(self, role: str, partitions: int) -> str:
        from kafka.admin import NewTopic

        name = f"bench.{self.run_id}.{role}"
        self.admin.create_topics(
            [NewTopic(name, partitions, 1, topic_configs=TOPIC_CONFIG)], timeout_ms=30_000
        )
        self.created.append(name)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            described = self.admin.describe_topics([name])
            parts = described[0]["partitions"] if described else []
            if len(parts) == partitions and all(p["leader"] >= 0 for p in parts):
                return name
            time.sleep(0.1)
        raise SystemExit(f"bench: topic {name} has no leader")

    def delete_all(self) -> None:
        try:
            if self.created:
                self.admin.delete_topics(self.created, timeout_ms=30_000)
        except Exception:  # noqa: BLE001 - cleanup: a broker problem must not hide the figures
            pass
        self.admin.close()


def producer(bootstrap: str, **options):
    from kafka import KafkaProducer

    defaults = dict(
        acks=1, linger_ms=5, batch_size=262_144, max_in_flight_requests_per_connection=1
    )
    return KafkaProducer(bootstrap_servers=bootstrap, **{**defaults, **options})


def produce_all(bootstrap: str, topic: str, events: list[dict], tail: list[tuple[int, dict]]):
    """Pre-load: every event keyed by user_id (one user, one partition: per-user order kept),
    then the `(partition, event)` tail with explicit partitions."""
    out = producer(bootstrap, linger_ms=50)
    for event in events:
        out.send(topic, key=event["user_id"].encode(), value=orjson.dumps(event))
    out.flush()
    for partition, event in tail:
        out.send(
            topic, key=event["user_id"].encode(), value=orjson.dumps(event), partition=partition
        )
    out.flush()
    out.close()


PACED_PRODUCER = ROOT / "bench" / "jvm" / "PacedProducer.java"
KAFKA_JARS = ROOT / ".cache" / "jars" / "kafka"


def produce_paced(bootstrap: str, topic: str, events: list[dict], schedule_path: Path) -> dict:
    """Send each event once the wall clock reaches its event time, as a device would (`events`
    are in arrival order, so a delayed event goes out right after the one before it); returns
    the producer's report (records sent, how late sends were against the schedule).

    The sending is done by bench/jvm/PacedProducer.java, a Java process: a Python producer on
    this 2-core machine, sharing it with the job under test, fell behind by up to 420 ms at a
    time at 5k events/s, and every such pause holds the watermark back."""
    send_at = 0
    with schedule_path.open("wb") as out:
        for event in events:
            send_at = max(send_at, event["ts"])
            out.write(b"%d\t%s\t%s\n" % (send_at, event["user_id"].encode(), orjson.dumps(event)))
    command = ["java", "-cp", f"{KAFKA_JARS}/*", str(PACED_PRODUCER), bootstrap, topic]
    done = subprocess.run(
        [*command, str(schedule_path)], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"bench: PacedProducer failed: {done.stderr.strip()[-2000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    if report["sent"] != len(events):
        raise SystemExit(f"bench: PacedProducer sent {report['sent']} of {len(events)} events")
    return report


@dataclass
class Record:
    append_ms: int
    partition: int
    offset: int
    value: bytes


def read_topic(bootstrap: str, topic: str, committed_only: bool = False) -> list[Record]:
    """Every record of a topic (up to its end now), with the broker's append time."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        group_id=None,
        isolation_level="read_committed" if committed_only else "read_uncommitted",
        max_partition_fetch_bytes=8 << 20,
        fetch_max_bytes=64 << 20,
        max_poll_records=50_000,
    )
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    ends = consumer.end_offsets(partitions)
    records: list[Record] = []
    remaining = {tp for tp in partitions if ends[tp] > 0}
    deadline = time.monotonic() + 300
    while remaining and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(Record(r.timestamp, r.partition, r.offset, r.value) for r in batch)
        remaining = {tp for tp in remaining if consumer.position(tp) < ends[tp]}
    consumer.close()
    return records


class LiveReader(threading.Thread):
    """Reads a topic as it is written and notes when each record became visible to this consumer
    (read_committed: for an exactly-once sink, that is the commit at a checkpoint)."""

    def __init__(self, bootstrap: str, topic: str):
        super().__init__(daemon=True)
        from kafka import KafkaConsumer

        self.consumer = KafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
            isolation_level="read_committed",
            fetch_max_wait_ms=20,
        )
        self.seen: list[tuple[int, bytes]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            for batch in self.consumer.poll(timeout_ms=100).values():
                received = now_ms()
                self.seen.extend((received, r.value) for r in batch)
        self.consumer.close()

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=10)


# -- Flink jobs ------------------------------------------------------------------------------
class FlinkJob:
    """A job in its own process group (a Python client plus the MiniCluster JVM it starts).
    Every job started and not stopped yet is in `FlinkJob.running` (`stop_all` ends them)."""

    running: set[FlinkJob] = set()

    @classmethod
    def stop_all(cls) -> None:
        for job in list(cls.running):
            job.stop()

    def __init__(
        self,
        name: str,
        argv: list[str],
        log_dir: Path,
        env: dict | None = None,
        cpu_interval_s: float | None = None,
    ):
        """`cpu_interval_s`: sample the CPU of the job's processes from their start (`self.cpu`,
        a CpuSampler, stopped by `stop`)."""
        self.name = name
        self.rest_port = free_port()
        env = dict(os.environ if env is None else env)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        self.log_path = log_dir / f"{name}.log"
        self.log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [*argv, "--rest-port", str(self.rest_port)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
            start_new_session=True,
        )
        FlinkJob.running.add(self)
        self.job_id: str | None = None
        self.cpu: CpuSampler | None = None
        if cpu_interval_s:
            self.cpu = CpuSampler(self.process.pid, cpu_interval_s)
            self.cpu.start()

    def get(self, path: str):
        url = f"http://127.0.0.1:{self.rest_port}{path}"
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())

    def wait_running(self, timeout_s: float = 180) -> None:
        """Until every subtask of the job is RUNNING (operators opened, Python loaded)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see {self.log_path}")
            try:
                jobs = self.get("/jobs/overview").get("jobs", [])
                if jobs and jobs[0]["state"] == "RUNNING":
                    tasks = jobs[0].get("tasks", {})
                    if tasks.get("running", 0) == tasks.get("total", -1) > 0:
                        self.job_id = jobs[0]["jid"]
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(
            f"{self.name} did not start within {timeout_s:.0f} s; see {self.log_path}"
        )

    def running_since_ms(self) -> int:
        """The latest RUNNING timestamp of any subtask: from then on the whole job processes."""
        latest = 0
        for vertex in self.get(f"/jobs/{self.job_id}")["vertices"]:
            times = self.get(f"/jobs/{self.job_id}/vertices/{vertex['id']}/subtasktimes")
            for subtask in times["subtasks"]:
                latest = max(latest, subtask["timestamps"].get("RUNNING", 0))
        return latest

    def user_metrics(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for vertex in self.get(f"/jobs/{self.job_id}")["vertices"]:
            base = f"/jobs/{self.job_id}/vertices/{vertex['id']}/subtasks/metrics"
            prefixes = ("decode.", "detect.", "activity.", "release.", "enrich.")
            names = [m["id"] for m in self.get(base) if m["id"].startswith(prefixes)]
            if names:
                for m in self.get(f"{base}?get={','.join(names)}&agg=sum"):
                    totals[m["id"]] = m["sum"]
        return totals

    def vertex_load(self) -> dict[str, dict[str, float]]:
        """Per vertex: busy, back-pressured and idle ms per second (the latest sample, the
        maximum over subtasks), to see which operator a backlog piles up in front of."""
        load = {}
        names = "busyTimeMsPerSecond,backPressuredTimeMsPerSecond,idleTimeMsPerSecond"
        for vertex in self.get(f"/jobs/{self.job_id}")["vertices"]:
            base = f"/jobs/{self.job_id}/vertices/{vertex['id']}/subtasks/metrics"
            values = self.get(f"{base}?get={names}&agg=max")
            load[vertex["name"][:60]] = {m["id"]: m["max"] for m in values}
        return load

    def latest_checkpoint(self) -> dict | None:
        try:
            latest = self.get(f"/jobs/{self.job_id}/checkpoints")["latest"]["completed"]
        except (OSError, KeyError, TypeError):
            return None
        return latest

    def checkpoint_times(self) -> list[dict]:
        """The checkpoints Flink remembers (its REST history: the latest 10 by default), oldest
        first: when each was triggered and how long it took, to line up with latency spikes."""
        try:
            history = self.get(f"/jobs/{self.job_id}/checkpoints")["history"]
        except (OSError, KeyError, TypeError):
            return []
        keys = ("id", "status", "trigger_timestamp", "end_to_end_duration", "state_size")
        return sorted(
            ({k: c.get(k) for k in keys} for c in history), key=lambda c: c["trigger_timestamp"]
        )

    def process_tree_rss(self) -> list[dict]:
        """VmRSS / VmHWM of this job's processes (client, JVM, Python workers), from /proc."""
        root = self.process.pid
        return [proc_status(pid) | {"root": pid == root} for pid in process_tree(root)]

    def stop(self) -> None:
        FlinkJob.running.discard(self)
        if self.cpu is not None:
            self.cpu.stop()
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
            except ProcessLookupError:
                pass
        self.log.close()


class CpuSampler(threading.Thread):
    """CPU seconds (user + system) of a process and its descendants, sampled from /proc every
    `interval_s` with wall-clock stamps, so that the CPU of an interval that ends before the
    sampling stops (the idle wait that confirms a run is over) can be read by interpolation:
    `between(t0_ms, t1_ms)`. A process that exits keeps the CPU it had at its last sample."""

    def __init__(self, root: int, interval_s: float = 0.25):
        super().__init__(daemon=True)
        self.root = root
        self.interval_s = interval_s
        self.samples: list[tuple[int, float]] = []
        self.per_process: dict[tuple[int, int], int] = {}
        self.stopping = threading.Event()

    def run(self) -> None:
        self.sample()
        while not self.stopping.wait(self.interval_s):
            self.sample()

    def sample(self) -> None:
        stamp = now_ms()
        # Keyed by (pid, start time): a process seen once keeps its share after it exits.
        self.per_process.update(tree_cpu_ticks(self.root))
        self.samples.append((stamp, sum(self.per_process.values()) / CLOCK_TICKS))

    def stop(self) -> None:
        """Stop sampling (one last sample first, while the processes still run)."""
        if not self.stopping.is_set():
            self.stopping.set()
            if self.is_alive():
                self.join(timeout=10)
                self.sample()

    def at(self, t_ms: float) -> float | None:
        """The tree's CPU seconds at wall-clock `t_ms`, interpolated between the samples around
        it (the first or last sample outside their range)."""
        return interpolate(self.samples, t_ms)

    def between(self, t0_ms: float, t1_ms: float) -> float | None:
        start, end = self.at(t0_ms), self.at(t1_ms)
        return None if start is None or end is None else end - start


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def interpolate(samples: list[tuple[int, float]], t_ms: float) -> float | None:
    """The value at `t_ms` of a series of (time, value) sorted by time, linear between samples."""
    if not samples:
        return None
    times = [t for t, _ in samples]
    i = bisect.bisect_left(times, t_ms)
    if i == 0:
        return samples[0][1]
    if i == len(samples):
        return samples[-1][1]
    (t_a, v_a), (t_b, v_b) = samples[i - 1], samples[i]
    return v_a + (v_b - v_a) * (t_ms - t_a) / (t_b - t_a) if t_b > t_a else v_b


def tree_cpu_ticks(root: int) -> dict[tuple[int, int], int]:
    """utime + stime (clock ticks) of each process of the tree under `root`, keyed by
    (pid, start time), from /proc/<pid>/stat."""
    ticks = {}
    for pid in process_tree(root):
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks[(pid, int(fields[19]))] = int(fields[11]) + int(fields[12])
    return ticks


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def proc_status(pid: int) -> dict:
    info: dict = {"pid": pid}
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                key, _, value = line.partition(":")
                if key in ("Name", "PPid", "VmRSS", "VmHWM"):
                    info[key] = value.strip()
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            info["cmdline"] = cmdline.read().replace(b"\0", b" ").decode(errors="replace")[:300]
    except OSError:
        pass
    for key in ("VmRSS", "VmHWM"):
        if key in info:
            info[key + "_mb"] = round(int(info.pop(key).split()[0]) / 1024, 1)
    return info


def wait_quiet(poll, quiet_s: float, limit_s: float, min_count: int = 0) -> float:
    """Call poll() (a growing count) until it stops growing for quiet_s, once it is at least
    `min_count`; returns seconds waited."""
    started = time.monotonic()
    last, since = -1, started
    while time.monotonic() - started < limit_s:
        count = poll()
        if count != last or count < min_count:
            last, since = count, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            break
        time.sleep(0.25)
    return time.monotonic() - started
