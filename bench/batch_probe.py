"""Per-event cost of the Python boundary: one call per event (today) against one call per batch
of many users' events with the keyed-state key switched from Python (a design under study).

    PATH=.venv/bin:$PATH .venv/bin/python bench/batch_probe.py [--events N] [--users U] [--rounds R]
        [--window-ms W] [--warmup K] [--jobs JOB ...] [--verify]

Every job runs on a local MiniCluster (in the gateway JVM, a child of this process), parallelism
1, thread mode (`python.execution-mode: thread`, the interpreter and site-packages set as
jobs/detection/environment.py sets them). The events come from the JVM: a bounded Flink SQL
`datagen` table with a `sequence` field `seq` in [0, N), user `u<seq mod U>`, event time
`BASE + floor(seq / 5)` ms (5 events per ms), watermark `rt - 0.1 s`.

Jobs, each run once per round, in this order:

* `base_a`: `to_data_stream` of (uid, ts), keyed in the JVM on uid as the detection job keys
  (`jobs.flink_compat.key_by_first_field`), into a JVM DiscardingSink. No Python.
* `a` ("per event"): the same keyed stream into a Python KeyedProcessFunction: per element,
  `state.value()` (a PICKLED_BYTE_ARRAY ValueState), append ts, keep the last 3,
  `state.update`, `register_event_time_timer(ts + 1)`; per timer, `state.value()` and
  `state.update`. Two JVM->Python calls per event.
* `base_b`: the events grouped in SQL into one row per W ms event-time tumbling window
  (window TVF, `ARRAY_AGG(uid)`, `ARRAY_AGG(ts)`, shard key the constant 'k'), keyed in the JVM
  on the shard, into a DiscardingSink. No Python.
* `b` ("batched across users"): the same batches into a Python KeyedProcessFunction that, per
  (user, ts) of the batch, sets the keyed state backend's current key to Row(user) (the Java
  backend PyFlink hands the operator: `runtime_context.get_keyed_state_backend()
  ._keyed_state_backend`, `setCurrentKey(key)` with `key = Row.withPositions(1);
  key.setField(0, user)` of org.apache.flink.types.Row, no reflection), then does A's element
  work without the timer, and sets the batch's own key back before returning. One call per
  batch.

`--jobs` also takes two variants of b (not run by default): `b_cached`, the key Rows built once
per user and kept in a dict; `b_nokey`, no key switch (every event's state on the batch's key):
what building keys and switching cost. `--warmup K`: K rounds first, printed, not in medians.

Figures per job: wall time of `execute()` (MiniCluster start to job end), the job's net run time
(`JobExecutionResult.getNetRuntime`), events/s on the net run time, CPU ms per 1,000 events of
the MiniCluster's JVM (utime + stime of /proc/<jvm pid>/stat around `execute()`, the embedded
Python included), and the Python calls (elements + timers) per event, counted by the functions
and written to a file in `close()`. `a - base_a` and `b - base_b` is the Python boundary's share.
At the end of every Python job the function reads back a few users' states through the same key
switch; the script checks them against what the generator implies (the last three ts).

`--verify`: a small run (default 2,000 events, 50 users), both shapes: every user's state read
back and compared, every key B switches to checked against the subtask's key-group range, and an
event-time timer registered by B after a key switch, whose `on_timer` reports the key it sees.

Prints a table (medians over rounds) on stderr and one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pyflink.datastream import KeyedProcessFunction  # noqa: E402

from jobs import flink_compat  # noqa: E402
from jobs.detection.environment import python_worker_options, venv_first_on_path  # noqa: E402

BASE_MS = 1_700_000_000_000
DISCARDING_SINK = "org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink"
SAMPLE_USERS = 5
JOBS = ("base_a", "a", "base_b", "b")
# Variants of b, run only when named in --jobs: the key Rows built once per user and kept in a
# dict (b_cached), or no key switch at all, every event's state on the batch's own key (b_nokey:
# what the switch costs; its states are not per user, so not checked).
VARIANTS = ("b_cached", "b_nokey")
KEY_MODES = {"b": "build", "b_cached": "cached", "b_nokey": "none"}


# --------------------------------------------------------------------------- Python functions
# Defined here (pickled by value into the MiniCluster's embedded interpreter); they import only
# pyflink and pemja there.


def _recent_append(recent, ts):
    if recent is None:
        return [ts]
    recent.append(ts)
    if len(recent) > 3:
        del recent[:-3]
    return recent


class _Probe(KeyedProcessFunction):
    def __init__(
        self, report_path: str, sample_users: list[str], verify: bool, key_mode: str = "build"
    ):
        self.key_mode = key_mode
        self.report_path = report_path
        self.sample_users = sample_users
        self.verify = verify

    def open(self, runtime_context):
        from pemja import findClass
        from pyflink.common import Types
        from pyflink.datastream.state import ValueStateDescriptor

        self.state = runtime_context.get_state(
            ValueStateDescriptor("recent", Types.PICKLED_BYTE_ARRAY())
        )
        # The Java keyed state backend PyFlink gave the operator (HeapKeyedStateBackend).
        self.backend = runtime_context.get_keyed_state_backend()._keyed_state_backend
        self.j_row = findClass("org.apache.flink.types.Row")
        self.elements = 0
        self.timers = 0
        self.report = {"backend_class": self.backend.getClass().getName()}

    def _key(self, user):
        # Row.of(user) through pemja fails (varargs: NegativeArraySizeException: -1).
        key = self.j_row.withPositions(1)
        key.setField(0, user)
        return key

    def _switch(self, user):
        self.backend.setCurrentKey(self._key(user))

    def close(self):
        states = {}
        try:
            own = self.backend.getCurrentKey()
            for user in self.sample_users:
                self._switch(user)
                states[user] = self.state.value()
            if own is not None:
                self.backend.setCurrentKey(own)
        except Exception as e:  # reported, not raised: the figures still count
            self.report["readback_error"] = repr(e)
        self.report.update(elements=self.elements, timers=self.timers, states=states)
        with open(self.report_path, "w") as f:
            json.dump(self.report, f)


class PerEvent(_Probe):
    """Shape A: one call per event, one per timer."""

    def process_element(self, value, ctx):
        self.elements += 1
        ts = value  # the keyed operator gets the row's second field (Row(key, payload))
        state = self.state
        state.update(_recent_append(state.value(), ts))
        ctx.timer_service().register_event_time_timer(ts + 1)

    def on_timer(self, timestamp, ctx):
        self.timers += 1
        state = self.state
        state.update(state.value())


class Batched(_Probe):
    """Shape B: one call per batch; the key switched per (user, ts) of the batch."""

    def open(self, runtime_context):
        super().open(runtime_context)
        self.events = 0
        self.keys = {}
        if self.verify:
            from pemja import findClass

            self.kg_assign = findClass("org.apache.flink.runtime.state.KeyGroupRangeAssignment")
            self.report.update(
                key_groups_checked=0,
                key_groups_outside=0,
                number_of_key_groups=self.backend.getNumberOfKeyGroups(),
                key_group_range=str(self.backend.getKeyGroupRange()),
                fired=[],
            )
            self.timer_probe_done = False

    def process_element(self, value, ctx):
        self.elements += 1
        backend = self.backend
        state = self.state
        own = backend.getCurrentKey()
        users, stamps = value[0], value[1]
        self.events += len(users)
        if self.key_mode == "build":
            make_key = self._key
            for user, ts in zip(users, stamps, strict=True):
                backend.setCurrentKey(make_key(user))
                state.update(_recent_append(state.value(), ts))
        elif self.key_mode == "cached":
            keys = self.keys
            for user, ts in zip(users, stamps, strict=True):
                key = keys.get(user)
                if key is None:
                    key = keys[user] = self._key(user)
                backend.setCurrentKey(key)
                state.update(_recent_append(state.value(), ts))
        else:
            for ts in stamps:
                state.update(_recent_append(state.value(), ts))
        if self.verify:
            self._verify_batch(users, stamps, ctx)
        backend.setCurrentKey(own)

    def _verify_batch(self, users, stamps, ctx):
        backend, report = self.backend, self.report
        range_ = backend.getKeyGroupRange()
        groups = backend.getNumberOfKeyGroups()
        for user in users:
            key = self._key(user)
            backend.setCurrentKey(key)
            report["key_groups_checked"] += 1
            group = self.kg_assign.assignToKeyGroup(key, groups)
            if not range_.contains(group) or group != backend.getCurrentKeyGroupIndex():
                report["key_groups_outside"] += 1
        if not self.timer_probe_done and users:
            # A timer registered after a switch: which key does on_timer see?
            self._switch(users[0])
            report["timer_registered_for"] = users[0]
            report["context_key_after_switch"] = str(ctx.get_current_key())
            ctx.timer_service().register_event_time_timer(stamps[0] + 1)
            self.timer_probe_done = True

    def on_timer(self, timestamp, ctx):
        self.timers += 1
        if self.verify:
            self.report["fired"].append(
                {
                    "timestamp": timestamp,
                    "key": str(ctx.get_current_key()),
                    "state": self.state.value(),
                }
            )

    def close(self):
        self.report["events"] = self.events
        super().close()


# --------------------------------------------------------------------------- jobs


def source_ddl(events: int, users: int) -> str:
    return f"""
        CREATE TEMPORARY TABLE gen (
            seq BIGINT,
            uid AS CONCAT('u', CAST(MOD(seq, {users}) AS STRING)),
            ts AS CAST({BASE_MS} + FLOOR(seq / 5) AS BIGINT),
            rt AS TO_TIMESTAMP_LTZ(CAST({BASE_MS} + FLOOR(seq / 5) AS BIGINT), 3),
            WATERMARK FOR rt AS rt - INTERVAL '0.1' SECOND
        ) WITH (
            'connector' = 'datagen',
            'rows-per-second' = '1000000000',
            'fields.seq.kind' = 'sequence',
            'fields.seq.start' = '0',
            'fields.seq.end' = '{events - 1}'
        )"""


def batch_query(window_ms: int) -> str:
    window = f"INTERVAL '{window_ms / 1000:.3f}' SECOND"
    return f"""
        SELECT 'k' AS shard, ROW(ARRAY_AGG(uid), ARRAY_AGG(ts)) AS batch
        FROM TABLE(TUMBLE(TABLE gen, DESCRIPTOR(rt), {window}))
        GROUP BY window_start, window_end"""


def make_env():
    from pyflink.common import Configuration
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import StreamTableEnvironment

    venv_first_on_path()
    conf = Configuration()
    conf.set_string("python.execution-mode", "thread")
    conf.set_string("python.state.cache-size", "100000")
    conf.set_string("python.fn-execution.bundle.time", "100")
    conf.set_string("pipeline.auto-watermark-interval", "50 ms")
    conf.set_string("execution.buffer-timeout", "20 ms")
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    env.set_parallelism(1)
    python_worker_options(flink_compat.environment_configuration(env), sys.executable)
    return env, StreamTableEnvironment.create(env)


def build(job: str, args, report_path: str, sample: list[str]):
    """A fresh environment holding `job`'s pipeline."""
    from pyflink.common import Types

    env, t_env = make_env()
    t_env.execute_sql(source_ddl(args.events, args.users))
    if job in ("base_a", "a"):
        stream = t_env.to_data_stream(t_env.sql_query("SELECT uid, ts FROM gen"))
        row_type = Types.ROW_NAMED(["uid", "ts"], [Types.STRING(), Types.LONG()])
        function = PerEvent(report_path, sample, args.verify)
    else:
        stream = t_env.to_data_stream(t_env.sql_query(batch_query(args.window_ms)))
        batch = Types.ROW_NAMED(
            ["users", "tss"],
            [Types.BASIC_ARRAY(Types.STRING()), Types.BASIC_ARRAY(Types.LONG())],
        )
        row_type = Types.ROW_NAMED(["shard", "batch"], [Types.STRING(), batch])
        function = Batched(report_path, sample, args.verify, KEY_MODES.get(job, "build"))
    flink_compat.set_output_type(stream, row_type)
    keyed = flink_compat.key_by_first_field(stream, row_type)
    tail = keyed if job.startswith("base") else keyed.process(function, Types.LONG())
    tail._j_data_stream.sinkTo(flink_compat.jvm_object(DISCARDING_SINK)).name("discard")
    return env


# --------------------------------------------------------------------------- measuring


def gateway_jvm_pid() -> int:
    """The java process among this process's descendants (the gateway JVM, MiniCluster inside)."""
    children: dict[int, list[int]] = {}
    comms = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
        comms[int(entry)] = comm
    todo, found = [os.getpid()], []
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            if comms.get(child) == "java":
                found.append(child)
            todo.append(child)
    if len(found) != 1:
        raise RuntimeError(f"expected one java child process, found {found}")
    return found[0]


def cpu_ticks(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # utime, stime


def expected_states(events: int, users: int, sample: list[str]) -> dict[str, list[int]]:
    out = {}
    for user in sample:
        u = int(user[1:])
        seqs = list(range(u, events, users))[-3:]
        out[user] = [BASE_MS + s // 5 for s in seqs] or None
    return out


def run_job(job: str, args, sample: list[str], jvm_pid: int | None) -> dict:
    with tempfile.NamedTemporaryFile(prefix=f"batch-probe-{job}-", suffix=".json") as f:
        report_path = f.name
    env = build(job, args, report_path, sample)
    if jvm_pid is None:
        jvm_pid = gateway_jvm_pid()
    ticks0 = cpu_ticks(jvm_pid)
    t0 = time.perf_counter()
    result = env.execute(f"batch-probe-{job}")
    wall = time.perf_counter() - t0
    cpu_ms = (cpu_ticks(jvm_pid) - ticks0) * 1000 / os.sysconf("SC_CLK_TCK")
    net_ms = result.get_net_runtime()
    row = {
        "job": job,
        "wall_s": round(wall, 3),
        "net_s": round(net_ms / 1000, 3),
        "events_per_s": round(args.events / (net_ms / 1000)),
        "cpu_ms_per_1k": round(cpu_ms / (args.events / 1000), 2),
        "jvm_pid": jvm_pid,
    }
    if not job.startswith("base"):
        report = json.loads(Path(report_path).read_text())
        os.unlink(report_path)
        calls = report["elements"] + report["timers"]
        row["python_calls"] = calls
        row["python_calls_per_event"] = round(calls / args.events, 4)
        row["elements"], row["timers"] = report["elements"], report["timers"]
        expected = expected_states(args.events, args.users, sample)
        row["states_match"] = None if job == "b_nokey" else report.get("states") == expected
        if row["states_match"] is False:
            row["states_seen"] = report.get("states")
            row["states_expected"] = expected
        for key in ("readback_error", "backend_class", "events"):
            if key in report:
                row[key] = report[key]
        if args.verify:
            row["report"] = {k: v for k, v in report.items() if k != "states"}
    return row


def summarize(rows: list[dict]) -> dict:
    out = {}
    for job in JOBS + VARIANTS:
        mine = [r for r in rows if r["job"] == job]
        if not mine:
            continue
        out[job] = {
            key: statistics.median(r[key] for r in mine)
            for key in (
                "wall_s",
                "net_s",
                "events_per_s",
                "cpu_ms_per_1k",
                "python_calls_per_event",
            )
            if key in mine[0]
        }
    for shape, base in (
        ("a", "base_a"),
        ("b", "base_b"),
        ("b_cached", "base_b"),
        ("b_nokey", "base_b"),
    ):
        if shape in out and base in out:
            out[f"{shape}_minus_{base}"] = {
                "net_us_per_event": round(
                    (out[shape]["net_s"] - out[base]["net_s"]) * 1e6 / ARGS.events, 2
                ),
                "cpu_ms_per_1k": round(out[shape]["cpu_ms_per_1k"] - out[base]["cpu_ms_per_1k"], 2),
            }
    return out


def print_table(rows: list[dict], summary: dict) -> None:
    err = sys.stderr
    print(
        f"{'round':>5} {'job':>7} {'wall s':>8} {'net s':>8} {'events/s':>10} "
        f"{'cpu ms/1k':>10} {'calls/ev':>9} {'state ok':>8}",
        file=err,
    )
    for r in rows:
        print(
            f"{r['round']:>5} {r['job']:>7} {r['wall_s']:>8.2f} {r['net_s']:>8.2f} "
            f"{r['events_per_s']:>10} {r['cpu_ms_per_1k']:>10.2f} "
            f"{r.get('python_calls_per_event', '-'):>9} {str(r.get('states_match', '-')):>8}",
            file=err,
        )
    print("median", file=err)
    for job in JOBS + VARIANTS:
        s = summary.get(job)
        if s:
            print(
                f"{'':>5} {job:>7} {s['wall_s']:>8.2f} {s['net_s']:>8.2f} "
                f"{s['events_per_s']:>10} {s['cpu_ms_per_1k']:>10.2f} "
                f"{s.get('python_calls_per_event', '-'):>9}",
                file=err,
            )
    for key in [k for k in summary if "_minus_" in k]:
        if key in summary:
            print(f"{key}: {summary[key]}", file=err)


def main(argv=None) -> int:
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=None)
    parser.add_argument("--users", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--window-ms", type=int, default=20)
    parser.add_argument("--jobs", nargs="+", choices=JOBS + VARIANTS, default=list(JOBS))
    parser.add_argument("--warmup", type=int, default=0, help="rounds run first, not counted")
    parser.add_argument("--verify", action="store_true")
    args = parser.parse_args(argv)
    if args.verify:
        args.events = args.events or 2_000
        args.users = args.users or 50
        args.rounds = args.rounds or 1
        args.jobs = [j for j in args.jobs if not j.startswith("base")]
    args.events = args.events or 200_000
    args.users = args.users or 50_000
    args.rounds = args.rounds or 3
    ARGS = args
    sample = (
        [f"u{i}" for i in range(args.users)]
        if args.verify
        else [f"u{i}" for i in range(min(SAMPLE_USERS, args.users))]
    )
    rows, jvm_pid = [], None
    for rnd in range(1 - args.warmup, args.rounds + 1):
        for job in args.jobs:
            row = run_job(job, args, sample, jvm_pid)
            jvm_pid = row["jvm_pid"]
            row["round"] = rnd  # <= 0: warm-up, not in the medians
            print(json.dumps(row), file=sys.stderr, flush=True)
            if rnd > 0:
                rows.append(row)
    summary = summarize(rows)
    print_table(rows, summary)
    print(
        json.dumps(
            {
                "events": args.events,
                "users": args.users,
                "rounds": args.rounds,
                "window_ms": args.window_ms,
                "verify": args.verify,
                "warmup": args.warmup,
                "loadavg": os.getloadavg(),
                "runs": rows,
                "median": summary,
            }
        )
    )
    return 0


ARGS = None

if __name__ == "__main__":
    sys.exit(main())
