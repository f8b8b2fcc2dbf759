"""A Flink standalone session cluster from PyFlink's own distribution, for tests and demos.

`SessionCluster` writes a configuration directory of its own (free ports, its own log, pid and
temp dirs; the distribution's `conf/` is never touched), starts a JobManager and TaskManagers
with the distribution's `bin/` scripts, and stops every process it started by pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import yaml

START_TIMEOUT_S = 240


def pyflink_home() -> Path:
    """FLINK_HOME of the installed PyFlink: its package directory has bin/, lib/, opt/, conf/."""
    import pyflink

    return Path(pyflink.__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _poll(condition: Callable[[], object], timeout: float, what: str) -> object:
    """Call `condition` until it returns something truthy; connection errors count as not yet."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = condition()
        except (OSError, urllib.error.URLError, ValueError) as error:
            result, last = None, error
        if result:
            return result
        last = result if result is not None else last
        time.sleep(0.25)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def _set(config: dict, dotted_key: str, value: object) -> None:
    """Set a flattened Flink key in the nested YAML the distribution's config.yaml uses (a flat
    key next to a nested one of the same prefix would be read twice)."""
    *parents, leaf = dotted_key.split(".")
    node = config
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


class SessionCluster:
    """JobManager + `task_managers` TaskManagers (`slots` each) under `work_dir`.

    `path_env` is the PATH the daemons start with: by default the caller's, with this
    interpreter's directory removed, so the cluster looks like a stock one that knows the venv
    only through `python.executable`.
    """

    def __init__(
        self,
        work_dir: Path,
        task_managers: int = 2,
        slots: int = 1,
        python: str = sys.executable,
        path_env: str | None = None,
        extra_config: dict[str, object] | None = None,
    ):
        self.flink_home = pyflink_home()
        self.work_dir = Path(work_dir)
        self.conf_dir = self.work_dir / "conf"
        self.log_dir = self.work_dir / "log"
        self.pid_dir = self.work_dir / "pid"
        self.tmp_dir = self.work_dir / "tmp"
        self.task_managers = task_managers
        self.rest_port = free_port()
        self.rpc_port = free_port()
        self.python = python
        self._jobs_seen: set[str] = set()
        venv_bin = str(Path(python).parent)
        default_path = os.pathsep.join(
            p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != venv_bin
        )
        self.path_env = default_path if path_env is None else path_env
        self.config = {
            "jobmanager.rpc.port": self.rpc_port,
            "rest.port": self.rest_port,
            "taskmanager.numberOfTaskSlots": slots,
            "parallelism.default": 1,
            "python.executable": python,
            "io.tmp.dirs": str(self.tmp_dir),
            "env.pid.dir": str(self.pid_dir),
            "env.log.dir": str(self.log_dir),
            # Small enough for two TaskManagers and a JobManager beside Kafka on a test machine.
            "jobmanager.memory.process.size": "1024m",
            "taskmanager.memory.process.size": "1536m",
            "execution.checkpointing.dir": (self.work_dir / "checkpoints").as_uri(),
            "execution.checkpointing.savepoint-dir": (self.work_dir / "savepoints").as_uri(),
            # A killed TaskManager is noticed in seconds rather than Flink's default 50 s.
            "heartbeat.timeout": 10000,
            "heartbeat.interval": 2000,
            **(extra_config or {}),
        }

    @property
    def jobmanager(self) -> str:
        """`host:port` of the REST endpoint, what `flink run -m` takes."""
        return f"localhost:{self.rest_port}"

    def env(self) -> dict[str, str]:
        """The environment of the bin/ scripts and of `flink` client commands."""
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("FLINK_", "PYFLINK_", "_PYFLINK"))
        }
        env.update(
            FLINK_HOME=str(self.flink_home),
            FLINK_CONF_DIR=str(self.conf_dir),
            FLINK_LOG_DIR=str(self.log_dir),
            FLINK_PID_DIR=str(self.pid_dir),
            PATH=self.path_env,
        )
        return env

    def write_config(self) -> None:
        for directory in (self.conf_dir, self.log_dir, self.pid_dir, self.tmp_dir):
            directory.mkdir(parents=True, exist_ok=True)
        for source in (self.flink_home / "conf").iterdir():
            if source.name != "config.yaml":
                shutil.copy(source, self.conf_dir / source.name)
        config = yaml.safe_load((self.flink_home / "conf" / "config.yaml").read_text()) or {}
        for key, value in self.config.items():
            _set(config, key, value)
        (self.conf_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    def _script(self, script: str, *args: str) -> None:
        self._scripts([(script, *args)])

    def _scripts(self, commands: list[tuple[str, ...]]) -> None:
        """Run bin/ scripts side by side and wait for all: each parses the configuration with a
        JVM of its own, slow on a busy host (flink-daemon.sh locks its pid file, so concurrent
        starts get log files of their own)."""
        running = [
            subprocess.Popen(
                [str(self.flink_home / "bin" / script), *args],
                env=self.env(),
                # Not the caller's directory: the embedded Python puts the daemon's cwd on
                # sys.path, and a source tree there would shadow the packages a job ships.
                cwd=self.work_dir,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for script, *args in commands
        ]
        failed = []
        for command, process in zip(commands, running, strict=True):
            try:
                output, _ = process.communicate(timeout=START_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                output, _ = process.communicate()
                failed.append(f"{' '.join(command)}: timed out after {START_TIMEOUT_S}s")
                continue
            if process.returncode:
                failed.append(f"{' '.join(command)}: exit {process.returncode}\n{output}")
        if failed:
            raise RuntimeError("\n".join(failed))

    def start(self) -> SessionCluster:
        self.write_config()
        # TaskManagers retry their registration until the JobManager is up.
        tm_start = [("taskmanager.sh", "start")] * self.task_managers
        self._scripts([("jobmanager.sh", "start"), *tm_start])
        self.wait_for_task_managers(self.task_managers)
        self._jobs_seen = self._job_ids()
        return self

    def start_task_manager(self) -> None:
        self._script("taskmanager.sh", "start")

    def restart_task_managers(self) -> None:
        """Replace every TaskManager with a fresh process, unless no job came since they started.
        Without the flink-python jar in lib/, a TaskManager runs one thread-mode job in its life
        (deploy/README.md), so each test's job gets new ones."""
        if self._job_ids() <= self._jobs_seen and len(self.task_manager_pids()) == (
            self.task_managers
        ):
            return
        self.stop_task_managers()
        self._scripts([("taskmanager.sh", "start")] * self.task_managers)
        self.wait_for_task_managers(self.task_managers)
        self._jobs_seen = self._job_ids()

    def stop_task_managers(self, timeout: float = 30) -> None:
        """What `taskmanager.sh stop-all` does (SIGTERM, SIGKILL after `timeout`), without its two
        configuration-parsing JVMs; returns once the JobManager has none registered."""
        pids = self.task_manager_pids()
        for pid in pids:
            _signal(pid, signal.SIGTERM)
        try:
            _poll(lambda: not any(_alive(pid) for pid in pids), timeout, "TaskManagers to exit")
        except TimeoutError:
            for pid in pids:
                _signal(pid, signal.SIGKILL)
        for pid_file in self.pid_dir.glob("flink-*-taskexecutor.pid"):
            pid_file.unlink()
        _poll(lambda: self.registered_task_managers() == 0, START_TIMEOUT_S, "TaskManagers gone")

    def _job_ids(self) -> set[str]:
        return {job["id"] for job in self.jobs()}

    def task_manager_pids(self) -> list[int]:
        """Pids of the TaskManagers this cluster started and that still run, oldest first."""
        pids = []
        for pid_file in self.pid_dir.glob("flink-*-taskexecutor.pid"):
            pids += [int(line) for line in pid_file.read_text().split() if line.strip()]
        return [pid for pid in pids if _alive(pid)]

    def kill_task_manager(self) -> int:
        """SIGKILL the oldest running TaskManager (no clean shutdown); its pid."""
        pid = self.task_manager_pids()[0]
        os.kill(pid, signal.SIGKILL)
        return pid

    def rest(self, path: str, method: str = "GET", body: dict | None = None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"http://localhost:{self.rest_port}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def registered_task_managers(self) -> int:
        return len(self.rest("/taskmanagers")["taskmanagers"])

    def wait_for_task_managers(self, count: int, timeout: float = START_TIMEOUT_S) -> None:
        _poll(
            lambda: self.registered_task_managers() >= count,
            timeout,
            f"{count} TaskManagers registered at {self.jobmanager} (logs: {self.log_dir})",
        )

    def jobs(self) -> list[dict]:
        """Every job the cluster knows: [{"id": ..., "status": ...}]."""
        return self.rest("/jobs")["jobs"]

    def running_jobs(self) -> list[str]:
        return [job["id"] for job in self.jobs() if job["status"] == "RUNNING"]

    def job(self, job_id: str) -> dict:
        return self.rest(f"/jobs/{job_id}")

    def checkpoints(self, job_id: str) -> dict:
        """The job's checkpoint statistics: `counts` (completed, restored...), `latest`."""
        return self.rest(f"/jobs/{job_id}/checkpoints")

    def completed_checkpoints(self, job_id: str) -> int:
        return self.checkpoints(job_id)["counts"]["completed"]

    def metric_min(self, job_id: str, name: str) -> float | None:
        """The lowest value of operator metric `name` over the subtasks that report it (e.g.
        `detect.currentInputWatermark`), None while none does."""
        values = []
        for vertex in self.job(job_id)["vertices"]:
            base = f"/jobs/{job_id}/vertices/{vertex['id']}/subtasks/metrics"
            if any(metric["id"] == name for metric in self.rest(base)):
                values += [m["min"] for m in self.rest(f"{base}?get={name}&agg=min") if "min" in m]
        return min(values) if values else None

    def cancel_all(self, timeout: float = 60) -> None:
        """Cancel every job that has not finished, and wait until none runs."""
        active = ("CREATED", "INITIALIZING", "RUNNING", "RESTARTING", "FAILING", "CANCELLING")
        for job in self.jobs():
            if job["status"] in active:
                self.rest(f"/jobs/{job['id']}?mode=cancel", method="PATCH")
        _poll(
            lambda: not [j for j in self.jobs() if j["status"] in active],
            timeout,
            "every job cancelled",
        )

    def log_tail(self, lines: int = 60) -> str:
        """The end of every daemon log, for a failing test's message."""
        out = []
        for log in sorted(self.log_dir.glob("*.log")):
            text = log.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"== {log.name}\n" + "\n".join(text))
        return "\n".join(out)

    def stop(self, timeout: float = 30) -> None:
        """Stop every daemon this cluster started as the bin/ scripts' stop-all does (SIGTERM,
        SIGKILL after `timeout`), without their configuration-parsing JVMs."""
        started = [
            int(line)
            for pid_file in self.pid_dir.glob("*.pid")
            for line in pid_file.read_text().split()
            if line.strip().isdigit()
        ]
        for pid in started:
            _signal(pid, signal.SIGTERM)
        try:
            _poll(lambda: not any(_alive(pid) for pid in started), timeout, "daemons to exit")
        except TimeoutError:
            for pid in started:
                _signal(pid, signal.SIGKILL)
        for pid_file in self.pid_dir.glob("*.pid"):
            pid_file.unlink()


def _signal(pid: int, signum: int) -> None:
    """Send `signum` to `pid` unless it has exited already."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers signal 0; its /proc status says it is gone.
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status
