"""README.md's commands, read from the Markdown (`moments_testing.docs`) and run as a user would.

Each runs with a plain environment: the venv's `bin` is not on PATH (`.venv/bin/moments` from a
fresh shell). The README writes its files under `/tmp/`; the tests put them in a temp dir of their
own instead (`in_dir`), so concurrent runs and a user's files are left alone.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from moments_testing.docs import ROOT, Block, block
from tests.helpers import wait_for

pytestmark = pytest.mark.integration
README = "README.md"
MOMENTS = ROOT / ".venv" / "bin" / "moments"
PLAIN_PATH = "/usr/bin:/bin"
README_BOOTSTRAP = "127.0.0.1:19092"


def plain_env(**extra: str) -> dict[str, str]:
    """This environment as a fresh shell would have it: no venv on PATH, no CRM (so actions
    carry `enrichment: skipped`, as in a backtest)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME") and not key.startswith("CRM_")
    }
    return {**env, "PATH": PLAIN_PATH, **extra}


def in_dir(shown: Block, directory: Path) -> str:
    """The block's commands with the README's `/tmp/` replaced by `directory`."""
    script = "\n".join(shown.commands())
    assert "/tmp/" in script, f"{shown.path}:{shown.line} no longer writes under /tmp/"
    return script.replace("/tmp/", f"{directory}/")


def run_script(script: str, cwd: Path = ROOT, timeout: float = 300, **env: str):
    """`script` in bash (stopping at the first failing command), from `cwd`."""
    result = subprocess.run(
        ["bash", "-e", "-c", script],
        cwd=cwd,
        env=plain_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"{script}\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
    return result


def actions_without_detected_at(path: Path) -> list[str]:
    """The actions of a JSONL file, sorted, `detected_at` dropped (file mode reports the event time
    of detection, the backtest its replay watermark)."""
    actions = []
    for line in path.read_text().splitlines():
        action = json.loads(line)
        action.pop("detected_at")
        actions.append(json.dumps(action, sort_keys=True))
    return sorted(actions)


def test_moments_run_with_a_plain_path_and_another_cwd_equals_backtest(tmp_path):
    """`.venv/bin/moments run` started outside the project, with a PATH that lacks the venv (PEMJA
    once found the base interpreter through PATH: "No module named 'pemja'")."""
    rules, events = ROOT / "examples" / "rules.yaml", tmp_path / "events.jsonl"
    run_script(
        f"{MOMENTS} generate --users 200 --events 2000 --out-of-order 2s --out {events}\n"
        f"{MOMENTS} backtest --rules {rules} --events {events} --out {tmp_path / 'backtest.jsonl'}",
        cwd=tmp_path,
    )
    run_script(
        f"{MOMENTS} run --rules {rules} --events {events} --out {tmp_path / 'run.jsonl'}",
        cwd=tmp_path,
        TMPDIR=str(tmp_path),
    )
    expected = actions_without_detected_at(tmp_path / "backtest.jsonl")
    got = actions_without_detected_at(tmp_path / "run.jsonl")
    assert expected, "the generated events should trigger some action"
    assert got == expected


@pytest.fixture(scope="module")
def tried(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """README's "Try:" block (validate, generate, backtest), run once for the tests below."""
    directory = tmp_path_factory.mktemp("readme-try")
    return directory, run_script(in_dir(block(README, "try"), directory))


def test_try_block_validates_generates_and_backtests(tried):
    directory, result = tried
    assert "examples/rules.yaml: 4 rule(s) valid" in result.stdout
    shown = block(README, "try").text
    events = (directory / "events.jsonl").read_text().splitlines()
    assert f"--events {len(events)} " in shown
    actions = [json.loads(line) for line in (directory / "actions.jsonl").read_text().splitlines()]
    assert {action["rule_id"] for action in actions} == {
        "cart_silence",
        "login_trouble",
        "quick_add",
        "no_checkout",
    }


def test_run_file_block_equals_the_backtest(tried):
    """README's file-mode `moments run`, on the events of the "Try:" block."""
    directory, _ = tried
    shown = block(README, "run-file")
    assert len(shown.commands()) == 1
    run_script(in_dir(shown, directory), TMPDIR=str(directory))
    words = shlex.split(shown.commands()[0])
    out = Path(words[words.index("--out") + 1])
    assert out.parent == Path("/tmp") and out.name != "actions.jsonl"  # the backtest's stays
    got = actions_without_detected_at(directory / out.name)
    assert got == actions_without_detected_at(directory / "actions.jsonl")


def _ensure_topics(admin, names: tuple[str, ...]) -> list[str]:
    """Creates those of `names` the broker lacks (the local broker has them); the created ones."""
    from kafka.admin import NewTopic

    missing = [name for name in names if name not in admin.list_topics()]
    if missing:
        admin.create_topics([NewTopic(name, 1, 1) for name in missing], timeout_ms=30000)
    return missing


def _group_at_end(bootstrap: str, group: str, topic: str) -> None:
    """Commits `group`'s offsets at the end of `topic`, so the job skips what earlier runs left."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        ends = consumer.end_offsets(partitions)
        consumer.commit({tp: OffsetAndMetadata(end, "", -1) for tp, end in ends.items()})
    finally:
        consumer.close()


def _default_group() -> str:
    """The consumer group `moments run` uses when the command names none."""
    from jobs.cli import build_parser

    [subcommands] = [a for a in build_parser()._actions if a.dest == "command"]
    return subcommands.choices["run"].get_default("group_id")


def test_run_kafka_block_turns_events_into_an_action(tmp_path, kafka_bootstrap, kafka_admin):
    """README's Kafka-mode `moments run`, as shown (only the broker address is the session's, when
    it is not the local one): three failed logins of a new user come out as a `login_trouble`
    action on `moments.actions`, and Ctrl-C (SIGINT to the process group) stops the job."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    from jobs import settings

    shown = block(README, "run-kafka")
    [command] = shown.commands()
    assert f"--bootstrap-servers {README_BOOTSTRAP}" in command
    command = command.replace(README_BOOTSTRAP, kafka_bootstrap)
    created = _ensure_topics(kafka_admin, settings.ALL_TOPICS)
    _group_at_end(kafka_bootstrap, _default_group(), settings.EVENTS_TOPIC)
    actions = KafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
    partitions = [
        TopicPartition(settings.ACTIONS_TOPIC, p)
        for p in actions.partitions_for_topic(settings.ACTIONS_TOPIC)
    ]
    actions.assign(partitions)
    for partition, end in actions.end_offsets(partitions).items():
        actions.seek(partition, end)  # only what the job writes from now on
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    events = producer.partitions_for(settings.EVENTS_TOPIC)
    user, run = f"docs-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex[:8]
    log_path = tmp_path / "run.log"
    with open(log_path, "w") as log:
        job = subprocess.Popen(
            ["bash", "-c", command],
            cwd=ROOT,
            env=plain_env(TMPDIR=str(tmp_path), PYTHONUNBUFFERED="1"),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    sent = [0]

    def send(event_type: str, who: str, partition: int | None = None) -> None:
        sent[0] += 1
        event = {
            "event_id": f"{run}-{sent[0]}",
            "user_id": who,
            "event_type": event_type,
            "ts": int(time.time() * 1000),
        }
        producer.send(
            settings.EVENTS_TOPIC, json.dumps(event).encode(), key=who.encode(), partition=partition
        )

    def action_arrived() -> list[dict]:
        assert job.poll() is None, log_path.read_text()[-3000:]
        # Later events on every partition move the watermark past the third failed login.
        for partition in events:
            send("page_view", f"docs-heartbeat-{run}", partition)
        producer.flush()
        found = [
            json.loads(record.value)
            for batch in actions.poll(timeout_ms=500).values()
            for record in batch
        ]
        return [action for action in found if action["user_id"] == user]

    try:
        for _ in range(3):
            send("login_failed", user)
        producer.flush()
        # Generous: a cold MiniCluster start on a loaded 2-core machine took minutes; a job
        # that dies fails at once (action_arrived asserts it is alive).
        try:
            [action] = wait_for(action_arrived, timeout=420, interval=0.5, message="the action")
        except AssertionError as error:
            raise AssertionError(f"{error}\n{log_path.read_text()[-3000:]}") from None
        assert action["rule_id"] == "login_trouble"
        os.killpg(job.pid, signal.SIGINT)
        job.wait(timeout=60)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait(timeout=30)
        producer.close()
        actions.close()
        if created:
            kafka_admin.delete_topics(created)
