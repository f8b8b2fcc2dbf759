"""The detection job on a Flink standalone session cluster: throughput and CPU per TaskManager.

    .venv/bin/python bench/cluster_bench.py [--events 200000] [--users 5000] [--rounds 1]
        [--bootstrap 127.0.0.1:19092]
        [--layouts 1x1-thread-p1 2x1-thread-p2 1x2-thread-p2 1x2-process-p2]

Which layout scales at parallelism 2: one slot per TaskManager in thread mode (each TaskManager
embeds a CPython of its own), two slots of one TaskManager in thread mode (two subtasks share one
interpreter and its GIL), or process mode (a Python worker process per slot)? A layout is
`<TaskManagers>x<slots>-<execution mode>-p<parallelism>`; 1x1-thread-p1 is the reference.

Produces a generated stream (udfs.generator, as detect_bench.py) once to a topic of 2 partitions.
Each run starts a fresh session cluster (moments_testing.flink_cluster: a thread-mode job needs
fresh TaskManagers), submits jobs/detect.py with `flink run` as deploy/README.md does
(detect_bench's "design" rules, earliest offsets, a fresh consumer group, topics of its own for
the outputs), and stops the cluster after. `--rounds N` repeats the list of layouts N times,
interleaved.

The clock starts when the source has emitted its first record and stops when every record is
accounted for (the source has emitted them all and Python has processed, dead-lettered or called
late every record it was given), read from the cluster's REST API (metrics summed over subtasks,
refreshed every 200 ms). CPU: utime + stime from /proc of each TaskManager's process tree (the JVM
and, in process mode, its Python workers) and of the JobManager, sampled at both ends of the clock.
After the clock, two more checkpoints flush the actions sink; the actions topic's end offsets are
the run's action count, which must be the same for every layout.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from detect_bench import produce_stream, rules_text  # noqa: E402
from harness import CLOCK_TICKS, tree_cpu_ticks  # noqa: E402

from jobs.settings import LOCAL_KAFKA_BOOTSTRAP  # noqa: E402
from moments_testing.flink_cluster import SessionCluster  # noqa: E402
from moments_testing.flink_job import create_topics  # noqa: E402

LAYOUTS = ["1x1-thread-p1", "2x1-thread-p2", "1x2-thread-p2", "1x2-process-p2"]
LAYOUT = re.compile(r"(\d+)x(\d+)-(thread|process)-p(\d+)")
TIMEOUT_S = 300
ACTIVE = ("CREATED", "INITIALIZING", "RUNNING")


def metrics(cluster: SessionCluster, job: dict) -> dict[str, float]:
    """The source's numRecordsOut and the detect operator's metrics, summed over subtasks (as
    RunningJob.metrics_matching, on the cluster's REST API)."""
    totals: dict[str, float] = {}
    for vertex in job["vertices"]:
        base = f"/jobs/{job['jid']}/vertices/{vertex['id']}/subtasks/metrics"
        names = [
            m["id"]
            for m in cluster.rest(base)
            if m["id"].startswith("detect.")
            or (m["id"].startswith("Source__") and m["id"].endswith(".numRecordsOut"))
        ]
        if names:
            query = urllib.parse.quote(",".join(names), safe=",")
            for m in cluster.rest(f"{base}?get={query}&agg=sum"):
                totals[m["id"]] = totals.get(m["id"], 0.0) + m["sum"]
    return totals


def progress(cluster: SessionCluster, job: dict) -> tuple[float, float, float]:
    """(records the source emitted, records Python was given, records Python finished)."""
    totals = metrics(cluster, job)
    source = sum(value for name, value in totals.items() if name.startswith("Source__"))
    done = sum(totals.get(f"detect.{name}", 0.0) for name in ("processed", "late", "invalid"))
    return source, totals.get("detect.events_in", 0.0), done


def cpu_ticks(cluster: SessionCluster) -> dict[str, dict[tuple[int, int], int]]:
    """utime + stime ticks of each process of each daemon's tree, by daemon ("tm<pid>", "jm")."""
    jm = [
        int(pid)
        for f in cluster.pid_dir.glob("flink-*-standalonesession.pid")
        for pid in f.read_text().split()
    ]
    trees = {f"tm{pid}": tree_cpu_ticks(pid) for pid in sorted(cluster.task_manager_pids())}
    trees["jm"] = {key: t for pid in jm for key, t in tree_cpu_ticks(pid).items()}
    return trees


def cpu_seconds(before: dict, after: dict) -> dict[str, float]:
    """CPU seconds each daemon's tree used between two `cpu_ticks` samples."""
    return {
        daemon: sum(t - before.get(daemon, {}).get(key, 0) for key, t in ticks.items())
        / CLOCK_TICKS
        for daemon, ticks in after.items()
    }


def end_offsets(bootstrap: str, topic: str) -> int:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        return sum(consumer.end_offsets(partitions).values())
    finally:
        consumer.close()


def submit(args, cluster: SessionCluster, rules: Path, mode: str, p: int, outputs: dict) -> str:
    """`flink run -d` of jobs/detect.py as deploy/README.md shows; the new job's id."""
    command = [
        str(cluster.flink_home / "bin" / "flink"), "run", "-d", "-m", cluster.jobmanager,
        "-p", str(p), "-pyclientexec", ".venv/bin/python", "-py", "jobs/detect.py",
        "--rules", str(rules), "--bootstrap-servers", args.bootstrap,
        "--events-topic", args.topic, "--actions-topic", outputs["actions"],
        "--dlq-topic", outputs["dlq"], "--late-topic", outputs["late"],
        "--group-id", f"cluster-bench-{time.time_ns()}", "--starting-offsets", "earliest",
        "--checkpoint-interval", "10s", "--idle-fire-after", "off", "--execution-mode", mode,
    ]  # fmt: skip
    env = {**cluster.env(), "CRM_BACKEND": "none"}
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
    )
    if done.returncode:
        raise RuntimeError(f"flink run: exit {done.returncode}\n{done.stdout}\n{done.stderr}")
    [job_id] = [job["id"] for job in cluster.jobs()]
    return job_id


def measure(args, cluster: SessionCluster, job_id: str) -> tuple[float, dict[str, float]]:
    """Seconds from the source's first record to the last record accounted for, and the CPU
    seconds of each daemon in that interval."""
    started = finished_at = last = None
    cpu_start = cpu_stop = {}
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        job = cluster.job(job_id)
        if job["state"] not in ACTIVE:
            raise RuntimeError(f"job {job['state']}\n{cluster.log_tail()}")
        try:
            current = progress(cluster, job)
        except Exception:  # noqa: BLE001 - REST or metrics not up yet
            time.sleep(0.5)
            continue
        now = time.monotonic()
        source, given, done = current
        if started is None and source > 0:
            started, cpu_start = now, cpu_ticks(cluster)
        finished = source >= args.events and done >= given > 0
        if finished and last == current:
            return finished_at - started, cpu_seconds(cpu_start, cpu_stop)
        if finished:
            finished_at, cpu_stop = now, cpu_ticks(cluster)
        last = current
        time.sleep(0.25)
    raise RuntimeError(f"not done in {TIMEOUT_S}s; progress {last}\n{cluster.log_tail()}")


def run_once(args, layout: str, workdir: Path) -> dict:
    tms, slots, mode, p = LAYOUT.fullmatch(layout).groups()
    tms, slots, p = int(tms), int(slots), int(p)
    rules = workdir / "design.yaml"
    rules.write_text(rules_text("design"))
    outputs = create_topics(args.admin, "cluster-bench", {"actions": 2, "dlq": 1, "late": 1})
    cluster = SessionCluster(
        workdir / f"{layout}-{time.time_ns()}", task_managers=tms, slots=slots,
        python=str(ROOT / ".venv" / "bin" / "python"),
        # The REST API serves metrics at most this old (default 10 s): the clock needs fresh ones.
        extra_config={"metrics.fetcher.update-interval": 200},
    )  # fmt: skip
    try:
        cluster.start()
        job_id = submit(args, cluster, rules, mode, p, outputs)
        seconds, cpu = measure(args, cluster, job_id)
        # Two more checkpoints: the at-least-once sink flushes at each.
        seen = cluster.completed_checkpoints(job_id)
        deadline = time.monotonic() + 120
        while cluster.completed_checkpoints(job_id) < seen + 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        restarts = cluster.rest(f"/jobs/{job_id}/metrics?get=numRestarts")
        actions = end_offsets(args.bootstrap, outputs["actions"])
    finally:
        cluster.stop()
        args.admin.delete_topics(list(outputs.values()))
    tm_cpu = [round(s, 2) for daemon, s in cpu.items() if daemon.startswith("tm")]
    per_1k = [round(s * 1e6 / args.events, 1) for s in tm_cpu]
    result = {
        "layout": layout, "tms": tms, "slots": slots, "mode": mode, "parallelism": p,
        "events": args.events, "seconds": round(seconds, 2),
        "events_per_s": round(args.events / seconds), "tm_cpu_s": tm_cpu,
        "cpu_ms_per_1k_events_per_tm": per_1k,
        "cpu_ms_per_1k_events_total": round(sum(tm_cpu) * 1e6 / args.events, 1),
        "jm_cpu_s": round(cpu["jm"], 2), "actions": actions,
    }  # fmt: skip
    if any(float(m["value"]) for m in restarts or []):
        result["restarts"] = restarts
    return result


def table(results: list[dict]) -> None:
    print(f"\nmedians over rounds ({results[0]['events']} events)")
    print(f"{'layout':<16} {'runs':>4} {'events/s':>9} {'seconds':>8} {'cpu ms/1k per TM':>18} "
          f"{'total':>6} {'JM cpu s':>8} {'actions':>8}")  # fmt: skip
    for layout in dict.fromkeys(r["layout"] for r in results):
        runs = [r for r in results if r["layout"] == layout]
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0] if k in NUMERIC}
        per_tm = [
            statistics.median(r["cpu_ms_per_1k_events_per_tm"][i] for r in runs)
            for i in range(runs[0]["tms"])
        ]
        per_tm_text = " ".join(f"{v:.1f}" for v in per_tm)
        actions = "/".join(str(a) for a in sorted({r["actions"] for r in runs}))
        print(f"{layout:<16} {len(runs):>4} {med['events_per_s']:>9.0f} {med['seconds']:>8.2f} "
              f"{per_tm_text:>18} {med['cpu_ms_per_1k_events_total']:>6.1f} "
              f"{med['jm_cpu_s']:>8.2f} {actions:>8}")  # fmt: skip


NUMERIC = ("events_per_s", "seconds", "cpu_ms_per_1k_events_total", "jm_cpu_s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default=LOCAL_KAFKA_BOOTSTRAP)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--layouts", nargs="+", default=LAYOUTS)
    args = parser.parse_args()
    bad = [layout for layout in args.layouts if not LAYOUT.fullmatch(layout)]
    if bad:
        parser.error(f"layouts like 2x1-thread-p2 (TaskManagers x slots): not {bad}")

    from kafka.admin import KafkaAdminClient

    os.environ["CRM_BACKEND"] = "none"
    args.admin = KafkaAdminClient(bootstrap_servers=args.bootstrap)
    args.topic = create_topics(args.admin, "cluster-bench", {"events": 2})["events"]
    print(f"producing {args.events} events for {args.users} users to 2 partitions...", flush=True)
    results = []
    try:
        produce_stream(args.bootstrap, args.topic, args.events, args.users)
        with tempfile.TemporaryDirectory(prefix="cluster-bench-") as tmp:
            for _ in range(args.rounds):
                for layout in args.layouts:
                    try:
                        result = run_once(args, layout, Path(tmp))
                    except Exception as error:  # noqa: BLE001 - one failing layout, not all
                        print(json.dumps({"layout": layout, "error": str(error)[-3000:]}))
                        continue
                    results.append(result)
                    print(json.dumps(result), flush=True)
    finally:
        args.admin.delete_topics([args.topic])
    if not results:
        return 1
    table(results)
    counts = {r["actions"] for r in results}
    if len(counts) > 1:
        print(f"WARNING: the action counts differ between runs: {sorted(counts)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
