"""The one way tests, the demo and the benchmark start `moments`: this interpreter, `-m jobs.cli`,
the project root as cwd. `moments run` puts the venv first on PATH itself (jobs/detect), so no
caller munges PATH; a started job leads its own process group, so stopping it stops its JVM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def moments_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "jobs.cli", *args]


def run_moments(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess:
    """`moments ARGS...` to completion, output captured as text."""
    return subprocess.run(
        moments_argv(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ if env is None else env),
        cwd=ROOT,
    )


def start_moments(args: list[str], log, env: Mapping[str, str] | None = None) -> subprocess.Popen:
    """`moments ARGS...` in the background, in a process group of its own, output to `log`."""
    return subprocess.Popen(
        moments_argv(*args),
        stdout=log,
        stderr=subprocess.STDOUT,
        env=dict(os.environ if env is None else env),
        cwd=ROOT,
        start_new_session=True,
    )


def stop_group(process: subprocess.Popen, kill: bool = False, timeout: float = 30) -> None:
    """SIGTERM (or SIGKILL) the process group `process` leads; SIGKILL if it outlives
    `timeout`."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGKILL if kill else signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout)
