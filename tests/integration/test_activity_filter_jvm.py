"""The Java activity filter (udfs/jvm ActivityFilter) and its Python model (udfs/activity_filter.py)
fed the same records, watermarks and wall-clock times do the same thing, line by line: the
records they pass on, the watermarks, every timer they register (so the same per-user hash and
the same timer grid), and their skipped and held counts."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.engine.activity_scenarios import RULE_SETS, Scenario, feed, scenarios
from udfs.activity_filter import ActivityFilter, Emit, Timer, Watermark, filter_settings
from udfs.engine import Engine

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "udfs/jvm/src/dev/micromoments/flink/ActivityFilter.java"
HARNESS = Path(__file__).parent / "jvm" / "ActivityFilterHarness.java"
# Non-ASCII ids: the per-user delay hashes the UTF-8 bytes on both sides.
USERS = ("u1", "user-7", "ü", "用户")


def _flink_classpath() -> str:
    import pyflink

    return os.path.join(os.path.dirname(pyflink.__file__), "lib", "*")


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    """The Java filter's core, compiled from source with the harness, in one JVM for the
    module: one command per line in, what the filter did out, up to an `end` line."""
    classes = tmp_path_factory.mktemp("activity-filter-classes")
    classpath = _flink_classpath()
    subprocess.run(
        ["javac", "-cp", classpath, "-d", str(classes), str(CORE), str(HARNESS)],
        check=True,
    )
    process = subprocess.Popen(
        ["java", "-cp", f"{classes}{os.pathsep}{classpath}", "ActivityFilterHarness"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        bufsize=1,
    )

    def run(commands: list[str]) -> list[str]:
        process.stdin.write("".join(line + "\n" for line in [*commands, "end"]))
        process.stdin.flush()
        lines = []
        while not lines or not lines[-1].startswith("end\t"):
            line = process.stdout.readline()
            assert line, f"the harness stopped (exit code {process.poll()})"
            lines.append(line.rstrip("\n"))
        return lines

    yield run
    process.stdin.close()
    assert process.wait(timeout=30) == 0


def _commands(config, scenario: Scenario) -> list[str]:
    starts = "*" if config.start_types is None else ",".join(sorted(config.start_types))
    filtered = ",".join(sorted(config.filtered_types))
    commands = [
        f"filter\t{config.bucket_ms}\t{filtered}\t{starts}\t{config.flush_after_ms}\t"
        f"{config.bucket_end_spread_ms}"
    ]
    for step in scenario.steps:
        if step.kind == "record":
            r = step.record
            flag = "1" if r.decoded else "0"
            fields = (r.user_id, flag, r.event_type or "", r.ts or 0, r.item.event_id)
            commands.append("\t".join(["record", *map(str, fields)]))
        else:
            commands.append(f"{step.kind}\t{step.at}")
    return commands


def _model_lines(config, scenario: Scenario) -> list[str]:
    model = ActivityFilter(config)
    lines = []
    for step in scenario.steps:
        feed(model, step)
        for item in model.drain():
            if isinstance(item, Emit):
                lines.append(f"record\t{item.record.item.event_id}")
            elif isinstance(item, Watermark):
                lines.append(f"watermark\t{item.ts}")
            else:
                assert isinstance(item, Timer)
                lines.append(f"timer\t{item.domain}\t{item.user_id}\t{item.at}")
    return [*lines, f"end\t{model.skipped}\t{model.held}"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios(users=USERS), any_start=st.booleans())
def test_java_and_the_model_do_the_same_line_by_line(harness, scenario, any_start):
    config = filter_settings(Engine(RULE_SETS[scenario.rules]), scenario.idle_fire_after_ms)
    if any_start:
        config = config._replace(start_types=None)  # a silence any event may start
    assert harness(_commands(config, scenario)) == _model_lines(config, scenario)


def test_the_harness_sees_what_the_filter_does(harness):
    # A start, a bucket's first activity (forwarded, its end timer at 25 + the user's delay),
    # a later one (pending: a timer at ts + 1 and a flush on the 100 ms grid), then its release.
    config = filter_settings(Engine(RULE_SETS["mixed"]), 800)
    lines = harness(
        [
            "filter\t25\ta,b,c\tb\t100\t25",
            "time\t1234",
            "record\tuser-7\t1\tb\t0\ts",
            "record\tuser-7\t1\td\t10\ta1",
            "record\tuser-7\t1\td\t20\ta2",
            "watermark\t21",
        ]
    )
    assert config.flush_after_ms == 100 and config.bucket_end_spread_ms == 25
    assert lines == [
        "record\ts",
        "timer\tevent\tuser-7\t45",
        "record\ta1",
        "timer\tevent\tuser-7\t21",
        "timer\tprocessing\tuser-7\t1400",
        "record\ta2",
        "watermark\t21",
        "end\t0\t0",
    ]
