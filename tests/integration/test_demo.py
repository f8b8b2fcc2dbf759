"""`make demo` as README.md shows it, for 15 s of stream: it shows actions, measures latency and
stops what it started. Timings are printed by the demo, never asserted (the machine is shared)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from moments_testing.docs import ROOT, block
from tests.helpers import wait_for

pytestmark = pytest.mark.integration
RULES = ("cart_silence", "login_trouble", "quick_add", "no_checkout")
ACTION_LINE = re.compile(rf"^  \d\d:\d\d:\d\d  ({'|'.join(RULES)}) +u-\d+ .*trigger->screen", re.M)
PERCENTILES = r" +\d+ +\d+ +\d+ +\d+ +n=\d+$"


def processes_naming(text: str) -> list[str]:
    """Command lines of the running processes that contain `text`."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # ended meanwhile
        if text in argv:
            found.append(argv)
    return found


def test_make_demo_shows_actions_and_latency_percentiles_and_stops_what_it_started(
    kafka_bootstrap, crm_dsn, kafka_admin
):
    script = "\n".join(block("README.md", "make-demo").commands())
    env = {
        **os.environ,
        "DEMO_ARGS": "--duration 15",
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "CRM_DSN": crm_dsn,
    }
    result = subprocess.run(
        ["bash", "-e", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    out = result.stdout
    assert result.returncode == 0, out[-4000:] + result.stderr[-4000:]

    assert ACTION_LINE.search(out), out[-4000:]
    summary = re.search(
        r"^Summary: ([\d,]+) events \(\+2 invalid\) -> ([\d,]+) actions$", out, re.M
    )
    assert summary and int(summary[1].replace(",", "")) == 75_000, out[-4000:]
    assert int(summary[2].replace(",", "")) > 0
    assert re.search(r"^ +p50 +p95 +p99 +max$", out, re.M), out[-4000:]
    for measured in (
        "count/sequence: completing event appended -> action appended",
        "every action but those: trigger -> on this screen",
    ):
        assert re.search(rf"^  {re.escape(measured)}{PERCENTILES}", out, re.M), out[-4000:]

    run_id = re.search(r"topics demo\.(\d+)\.\* \(deleted at the end\)", out)[1]
    assert "Stopped what the demo started." in out
    assert processes_naming(f"demo.{run_id}.") == []
    wait_for(
        lambda: not [t for t in kafka_admin.list_topics() if t.startswith(f"demo.{run_id}.")],
        timeout=30,
        message=f"topics demo.{run_id}.* deleted",
    )
