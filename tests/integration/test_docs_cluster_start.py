"""deploy/README.md's commands that start and stop a session cluster from PyFlink's distribution,
run as written (free ports and a folder of the test's own through the variables the block reads):
the cluster must come up with two TaskManagers and be gone after the stop block."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request

import pytest

from moments_testing.docs import Block, block
from moments_testing.flink_cluster import free_port, pyflink_home
from moments_testing.launcher import ROOT
from tests.helpers import wait_for

pytestmark = pytest.mark.integration
DOC = "deploy/README.md"


def run(docs: Block, env: dict[str, str], timeout: float = 300) -> None:
    result = subprocess.run(
        ["bash", "-c", "set -e -o pipefail\n" + docs.text],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, (
        f"{docs.name}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    )


def task_managers(rest_port: int) -> int:
    url = f"http://localhost:{rest_port}/taskmanagers"
    with urllib.request.urlopen(url, timeout=5) as response:
        return len(json.loads(response.read())["taskmanagers"])


def test_start_and_stop_blocks_run_a_two_task_manager_cluster(tmp_path):
    rest_port = free_port()
    flink_dir = tmp_path / "flink"
    env = {
        **os.environ,
        "MOMENTS_FLINK_DIR": str(flink_dir),
        "FLINK_REST_PORT": str(rest_port),
        "FLINK_RPC_PORT": str(free_port()),
    }
    stop_env = {
        **env,
        "FLINK_HOME": str(pyflink_home()),
        "FLINK_CONF_DIR": str(flink_dir / "conf"),
        "FLINK_PID_DIR": str(flink_dir / "pid"),
    }
    daemons: list[str] = []
    try:
        run(block(DOC, "flink-start-session"), env)
        daemons = [
            pid
            for pid_file in (flink_dir / "pid").glob("*.pid")
            for pid in pid_file.read_text().split()
        ]
        assert len(daemons) == 3, daemons  # a JobManager and two TaskManagers
        wait_for(
            lambda: task_managers(rest_port) == 2,
            timeout=240,
            interval=1,
            message="two TaskManagers registered",
            ignore=(OSError,),
        )
    finally:
        run(block(DOC, "flink-stop-session"), stop_env)

    def rest_gone() -> bool:
        try:
            task_managers(rest_port)
        except OSError:
            return True
        return False

    wait_for(rest_gone, timeout=60, interval=1, message="the JobManager's REST API gone")
    wait_for(
        lambda: all(_gone(pid) for pid in daemons), timeout=60, message=f"daemons {daemons} gone"
    )


def _gone(pid: str) -> bool:
    """Exited: no such process, or a zombie its (orphaned) parent has not been reaped yet."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
