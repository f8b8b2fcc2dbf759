"""The detection job on a real Flink session cluster (PyFlink's own distribution, a JobManager and
two TaskManagers started without the venv on PATH), submitted with the `flink run` commands
deploy/README.md shows, compared with `moments backtest` on the same events: a plain run, a
TaskManager killed mid-stream under each delivery guarantee, and an upgrade through a savepoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections import Counter

import pytest
import yaml

from moments_testing.docs import Block, block
from tests.helpers import wait_for
from tests.integration.detect_data import T0, event, generate
from tests.integration.detect_kafka import ROOT, TopicReader, create_topics, produce
from tests.integration.test_detect_exactly_once import second_part
from tests.integration.test_detect_file import backtest, without_detected_at

pytestmark = pytest.mark.integration
EXAMPLE_RULES = ROOT / "examples" / "rules.yaml"
ACTIVE = ("CREATED", "INITIALIZING", "RUNNING", "RESTARTING")


def run_block(cluster, docs: Block, env_vars: dict[str, str], timeout: float = 600) -> str:
    """Run a shell block of the docs against `cluster` (stopping at the first failing command);
    its standard output. On a timeout its whole process group is killed, the `flink` client JVM
    and its Python included."""
    env = {**cluster.env(), "JOBMANAGER": cluster.jobmanager, **env_vars}
    command = "set -e -o pipefail\n" + docs.text
    name = docs.name or f"{docs.path}:{docs.line}"
    process = subprocess.Popen(
        ["bash", "-c", command],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        pytest.fail(f"block {name} timed out after {timeout}s:\n{out}\n{err}", pytrace=False)
    assert process.returncode == 0, f"block {name}: exit {process.returncode}\n{out}\n{err}"
    return out


def submit(cluster, docs: Block, env_vars: dict[str, str]) -> str:
    """Run a block of the docs that submits a job; the id of the job it added to the cluster."""
    before = {job["id"] for job in cluster.jobs()}
    run_block(cluster, docs, env_vars)
    [job_id] = [job["id"] for job in cluster.jobs() if job["id"] not in before]
    return job_id


def job_flags(topics: dict[str, str], *more: str) -> str:
    """`JOB_FLAGS` of the README's blocks: the test's own topics and consumer group."""
    return " ".join(
        [
            "--events-topic", topics["events"], "--actions-topic", topics["actions"],
            "--dlq-topic", topics["dlq"], "--late-topic", topics["late"],
            "--group-id", f"session-{topics['events']}", "--starting-offsets", "earliest",
            *more,
        ]
    )  # fmt: skip


def alive(cluster, job_id: str) -> bool:
    """Fails the test, with the daemons' logs, when the job has failed or ended."""
    state = cluster.job(job_id)["state"]
    assert state in ACTIVE, f"job {job_id} is {state}\n{cluster.log_tail()}"
    return True


def read_actions(reader: TopicReader) -> list[str]:
    """Every committed action so far, without `detected_at` (wall-clock in Kafka mode)."""
    return [without_detected_at(r.value.decode()) for r in reader.poll()]


def settle(cluster, job_id: str, reader: TopicReader) -> list[str]:
    """The actions once two more checkpoints have completed: a sink flushes (at-least-once) or
    commits (exactly-once) at each, so anything still to come would have come by then."""
    seen = cluster.completed_checkpoints(job_id)
    wait_for(
        lambda: alive(cluster, job_id) and cluster.completed_checkpoints(job_id) >= seen + 2,
        timeout=120, interval=0.5, message="two more checkpoints",
    )  # fmt: skip
    return read_actions(reader)


@pytest.fixture
def cluster(session_cluster):
    """The session cluster with fresh TaskManagers, and no job left running afterwards."""
    session_cluster.restart_task_managers()
    yield session_cluster
    session_cluster.cancel_all()


@pytest.fixture
def topics(kafka_admin):
    """Topics of the test's own: events and actions with two partitions (one per subtask)."""
    names = create_topics(kafka_admin, "session", {"events": 2, "actions": 2, "dlq": 1, "late": 1})
    yield names
    kafka_admin.delete_topics(list(names.values()))


@pytest.fixture
def actions(kafka_bootstrap, topics):
    """A read_committed reader of the test's actions topic."""
    reader = TopicReader(kafka_bootstrap, topics["actions"])
    yield reader
    reader.close()


def test_flink_run_as_documented_equals_backtest(cluster, kafka_bootstrap, topics, actions):
    """The README's `flink run` block at parallelism 2 on the two TaskManagers (a stock cluster:
    no project jar in its lib/, no venv on its PATH): the actions equal the backtest's."""
    lines, valid = generate(users=15, events_per_user=30, late=0, invalid=5)
    expected, _ = backtest(valid, rules_yaml=EXAMPLE_RULES.read_text())
    produce(kafka_bootstrap, topics["events"], lines)
    flags = job_flags(topics, "--idle-fire-after", "3s")
    job_id = submit(
        cluster,
        block("deploy/README.md", "flink-run-session"),
        {"KAFKA": kafka_bootstrap, "JOB_FLAGS": flags},
    )

    wait_for(
        lambda: alive(cluster, job_id) and len(actions.poll()) >= len(expected),
        timeout=240, interval=0.5, message="the backtest's actions",
    )  # fmt: skip
    assert {v["parallelism"] for v in cluster.job(job_id)["vertices"]} == {2}
    assert expected
    assert sorted(read_actions(actions)) == sorted(expected)


@pytest.mark.parametrize("delivery", ["exactly-once", "at-least-once"])
def test_task_manager_killed_mid_stream(
    cluster, kafka_bootstrap, topics, actions, delivery, record_property
):
    """Half the input, a completed checkpoint, SIGKILL of one TaskManager, the other half while
    the job restarts on a new TaskManager: no action is missing or invented. Exactly-once: a
    read_committed consumer sees each action once; at-least-once: replayed ones are counted."""
    part1, valid1 = generate(users=10, events_per_user=25, late=0, invalid=0)
    part2 = second_part(valid1)
    expected = Counter(
        backtest(valid1 + [json.loads(line) for line in part2], EXAMPLE_RULES.read_text())[0]
    )
    produce(kafka_bootstrap, topics["events"], part1)
    more = ["--delivery", delivery, "--checkpoint-interval", "2s", "--idle-fire-after", "3s"]
    if delivery == "exactly-once":
        more += ["--transactional-id-prefix", f"session-{topics['events']}"]
    flags = job_flags(topics, *more)
    job_id = submit(
        cluster,
        block("deploy/README.md", "flink-run-session"),
        {"KAFKA": kafka_bootstrap, "JOB_FLAGS": flags},
    )

    wait_for(
        lambda: alive(cluster, job_id)
        and cluster.completed_checkpoints(job_id) >= 1
        and len(actions.poll()) > 0,
        timeout=240, interval=0.5, message="a completed checkpoint and the first actions",
    )  # fmt: skip
    killed = cluster.kill_task_manager()
    produce(kafka_bootstrap, topics["events"], part2)
    cluster.start_task_manager()

    def every_expected_action():
        alive(cluster, job_id)
        return not expected - Counter(read_actions(actions))

    try:
        wait_for(every_expected_action, timeout=360, interval=0.5, message="the backtest's actions")
    except AssertionError as timed_out:
        missing = expected - Counter(read_actions(actions))
        late = TopicReader(kafka_bootstrap, topics["late"])
        try:
            late_events = len(wait_for(late.poll, timeout=10, message="a late event"))
        except AssertionError:
            late_events = 0
        late.close()
        raise AssertionError(
            f"{timed_out}\n{missing.total()} of {expected.total()} actions missing, e.g. "
            f"{list(missing)[:3]}; {late_events} events late\njob {cluster.job(job_id)['state']}, "
            "checkpoints "
            f"{cluster.checkpoints(job_id)['counts']}\n{cluster.log_tail()}"
        ) from None
    got = Counter(settle(cluster, job_id, actions))
    assert killed not in cluster.task_manager_pids()
    assert cluster.checkpoints(job_id)["counts"]["restored"] >= 1, "the job never restarted"
    assert not expected - got, "missing actions"
    assert set(got) == set(expected), "actions the backtest does not have"
    duplicates = (got - expected).total()
    record_property("duplicates", duplicates)
    print(f"{delivery}: {got.total()} actions, {duplicates} duplicates after the failover")
    if delivery == "exactly-once":
        assert duplicates == 0, "an action was delivered twice"


def upgraded_rules(rules_yaml: str) -> str:
    """examples/rules.yaml after an upgrade: cart_silence and quick_add unchanged, login_trouble
    edited (a longer window), no_checkout removed, search_burst added."""
    rules = yaml.safe_load(rules_yaml)["rules"]
    by_id = {rule["id"]: rule for rule in rules}
    by_id["login_trouble"]["pattern"]["within"] = "3m"
    del by_id["no_checkout"]
    by_id["search_burst"] = {
        "id": "search_burst",
        "pattern": {"type": "count", "match": {"event_type": "search"}, "threshold": 2,
                    "within": "1m"},
        "action": {"name": "search_help", "destinations": ["kafka"]},
    }  # fmt: skip
    return yaml.safe_dump({"rules": list(by_id.values())}, sort_keys=False)


def produce_ticks(bootstrap: str, topic: str, ts: int, partitions: int = 2) -> None:
    """A page_view at `ts` in every partition, from a user of its own per partition: the
    watermark (the minimum over partitions) moves to ts - bound."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for partition in range(partitions):
        user = f"tick-{partition}"
        record = event(f"{user}-{ts}", user, "page_view", ts)
        producer.send(topic, json.dumps(record).encode(), key=user.encode(), partition=partition)
    producer.flush()
    producer.close()


def ticks(ts: int) -> list[dict]:
    """The page_views of `produce_ticks`, for a backtest."""
    return [event(f"tick-{p}-{ts}", f"tick-{p}", "page_view", ts) for p in (0, 1)]


def rules_and_users(lines: list[str]) -> list[tuple[str, str]]:
    """(rule_id, user_id) of each action, sorted."""
    return sorted((json.loads(a)["rule_id"], json.loads(a)["user_id"]) for a in lines)


def test_upgrade_through_a_savepoint(cluster, kafka_bootstrap, topics, actions, tmp_path):
    """examples/rules.yaml runs, and the README's upgrade block stops it with a savepoint and
    resubmits from it with rules that keep, edit, remove and add one. State armed before the
    upgrade carries over for unchanged rules only: the edited rule starts clean and the removed
    one fires nothing, where a run without the upgrade (the backtest) would fire both."""
    t = T0
    old_rules = EXAMPLE_RULES.read_text()
    new_rules = tmp_path / "rules-v2.yaml"
    new_rules.write_text(upgraded_rules(old_rules))
    before = [
        # Both add_to_cart rules armed, and their deadlines (t - 15 s) passed, before the stop.
        event("a-1", "armed-early", "add_to_cart", t - 60_000),
        # Three failures: login_trouble fires before the stop.
        *(event(f"a-f{i}", "count-early", "login_failed", t + i * 1000) for i in range(3)),
        # cart_silence and no_checkout armed with deadlines (t + 45 s) after the stop.
        event("a-2", "armed", "add_to_cart", t),
        # Two failures of three: the edited rule's state.
        *(event(f"a-g{i}", "count", "login_failed", t + i * 1000) for i in range(2)),
    ]
    after = [
        # One more would complete the old count; the edited rule needs three new ones.
        *(event(f"b-g{i}", "count", "login_failed", t + 10_000 + i * 1000) for i in range(3)),
        *(event(f"b-s{i}", "searcher", "search", t + 10_000 + i * 1000) for i in range(2)),
    ]
    before.sort(key=lambda e: e["ts"])
    after.sort(key=lambda e: e["ts"])
    ticks_before, ticks_after = t + 5_000, t + 50_000  # watermarks: 2 s less
    # Without the upgrade (examples/rules.yaml throughout), and the new rules on fresh state.
    unchanged, _ = backtest([*before, *ticks(ticks_before), *after, *ticks(ticks_after)], old_rules)
    fresh, _ = backtest([*after, *ticks(ticks_after)], new_rules.read_text())
    expected_before = [a for a in unchanged if json.loads(a)["trigger_ts"] < ticks_before - 2000]
    carried = [a for a in unchanged if rules_and_users([a]) == [("cart_silence", "armed")]]
    stale = sorted(set(unchanged) - {*expected_before, *carried, *fresh})
    assert rules_and_users(expected_before) == [
        ("cart_silence", "armed-early"), ("login_trouble", "count-early"),
        ("no_checkout", "armed-early"),
    ]  # fmt: skip
    assert rules_and_users(carried) == [("cart_silence", "armed")]
    assert rules_and_users(fresh) == [("login_trouble", "count"), ("search_burst", "searcher")]
    assert rules_and_users(stale) == [("login_trouble", "count"), ("no_checkout", "armed")]

    produce(kafka_bootstrap, topics["events"], [json.dumps(e) for e in before])
    produce_ticks(kafka_bootstrap, topics["events"], ticks_before)
    flags = job_flags(topics, "--idle-fire-after", "off", "--checkpoint-interval", "2s")
    env_vars = {"KAFKA": kafka_bootstrap, "JOB_FLAGS": flags}
    old_job = submit(cluster, block("deploy/README.md", "flink-run-session"), env_vars)
    # Once the detect operator's watermark has passed the ticks', every record before them in
    # either partition has reached it.
    wait_for(
        lambda: alive(cluster, old_job)
        and watermark(cluster, old_job) >= ticks_before - 2000
        and len(actions.poll()) >= len(expected_before),
        timeout=240, interval=0.5, message="the actions before the upgrade",
    )  # fmt: skip
    assert sorted(read_actions(actions)) == sorted(expected_before)

    savepoints = tmp_path / "savepoints"
    upgrade = {**env_vars, "JOB_ID": old_job, "SAVEPOINT_DIR": str(savepoints)}
    new_job = submit(
        cluster,
        block("deploy/README.md", "flink-upgrade-session"),
        {**upgrade, "NEW_RULES": str(new_rules)},
    )
    assert cluster.job(old_job)["state"] == "FINISHED"
    restored = cluster.checkpoints(new_job)["latest"]["restored"]
    assert restored["is_savepoint"] and str(savepoints) in restored["external_path"], restored
    produce(kafka_bootstrap, topics["events"], [json.dumps(e) for e in after])
    produce_ticks(kafka_bootstrap, topics["events"], ticks_after)
    wait_for(
        lambda: alive(cluster, new_job) and watermark(cluster, new_job) >= ticks_after - 2000,
        timeout=240, interval=0.5, message="the watermark past every deadline",
    )  # fmt: skip
    got = settle(cluster, new_job, actions)
    assert sorted(got) == sorted([*expected_before, *carried, *fresh])
    assert not set(stale) & set(got)


def watermark(cluster, job_id: str) -> float:
    """The event time every subtask of the detect operator has reached."""
    return cluster.metric_min(job_id, "detect.currentInputWatermark") or float("-inf")
