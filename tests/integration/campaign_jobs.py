"""Helpers of the campaign-layer job tests: the backtest's records of each kind, and a Kafka job
with the suppressed and outcomes topics compared with them. Records are compared without
`detected_at` (wall-clock in a live job, replay time in a backtest)."""

from __future__ import annotations

import json

import yaml

from schemas.event import Event
from schemas.rules import parse_rules
from tests.helpers import wait_for
from tests.integration.detect_kafka import RunningJob, TopicReader, create_topics, kafka_args
from udfs.engine import Engine
from udfs.replay import Replay

KINDS = ("action", "suppressed", "outcome")
ROLES = {"action": "actions", "suppressed": "suppressed", "outcome": "outcomes"}
PARTITIONS = {"events": 2, "actions": 2, "dlq": 1, "late": 1, "suppressed": 1, "outcomes": 1}


def record(text: str) -> str:
    fields = json.loads(text)
    fields.pop("detected_at", None)
    return json.dumps(fields, sort_keys=True)


def backtest(rules_text: str, events: list[dict], bound_ms: int, enrich=None):
    """The sorted records of each kind, and the replay's counts."""
    out = {kind: [] for kind in KINDS}

    def collect(kind):
        return lambda item: out[kind].append(record(item.to_json_bytes().decode()))

    replay = Replay(
        Engine(parse_rules(yaml.safe_load(rules_text))),
        bound_ms,
        on_action=collect("action"),
        on_suppressed=collect("suppressed"),
        on_outcome=collect("outcome"),
        enrich=enrich,
    )
    for event in events:
        replay.push(Event.model_validate(event))
    replay.finish()
    return {kind: sorted(records) for kind, records in out.items()}, replay.counts


class CampaignKafkaJob:
    """Topics of its own, a reader per output kind, and `moments run` in Kafka mode over them."""

    def __init__(self, bootstrap: str, admin, prefix: str, rules, log_path, *extra: str):
        self.admin = admin
        self.topics = create_topics(admin, prefix, PARTITIONS)
        self.readers = {role: TopicReader(bootstrap, self.topics[role]) for role in ROLES.values()}
        self.bootstrap = bootstrap
        self.args = [
            *kafka_args(bootstrap, self.topics, rules, group=prefix),
            "--suppressed-topic", self.topics["suppressed"],
            "--outcomes-topic", self.topics["outcomes"],
            "--max-out-of-orderness", "2s", "--idle-fire-after", "2s",
            "--checkpoint-interval", "2s", "--parallelism", "2", *extra,
        ]  # fmt: skip
        self.log_path = log_path
        self.job: RunningJob | None = None

    def start(self) -> RunningJob:
        self.job = RunningJob(self.args, self.log_path)
        return self.job

    def assert_equal(self, expected: dict[str, list[str]], timeout: float = 180) -> None:
        """Wait until each topic holds as many records as expected, then compare as sets."""
        job, readers = self.job, self.readers

        def complete():
            assert job.alive(), job.log_tail()
            return all(len(readers[ROLES[kind]].poll()) >= len(expected[kind]) for kind in KINDS)

        try:
            wait_for(complete, timeout=timeout, interval=0.5, message="every record")
        except AssertionError:
            pass  # the comparison below says what is missing or extra
        for kind, role in ROLES.items():
            got = {record(r.value.decode()) for r in readers[role].poll()}
            missing, extra = set(expected[kind]) - got, got - set(expected[kind])
            assert not missing and not extra, (
                kind, len(missing), len(extra), sorted(missing)[:2], sorted(extra)[:2],
                job.log_tail(),
            )  # fmt: skip

    def close(self) -> None:
        if self.job is not None:
            self.job.stop()
        for reader in self.readers.values():
            reader.close()
        self.admin.delete_topics(list(self.topics.values()))


def assert_file_job_equal(
    directory, name: str, rules, events, expected: dict[str, list[str]], *extra: str
) -> None:
    """`moments run` in file mode writing every output kind, each equal to `expected`."""
    from moments_testing import launcher

    paths = {kind: directory / f"{kind}-{name}.jsonl" for kind in KINDS}
    result = launcher.run_moments(
        "run", "--rules", str(rules), "--events", str(events),
        "--out", str(paths["action"]), "--suppressed-out", str(paths["suppressed"]),
        "--outcomes-out", str(paths["outcome"]), *extra,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    for kind, path in paths.items():
        got = sorted(record(line) for line in path.read_text().splitlines() if line.strip())
        assert got == expected[kind], kind
