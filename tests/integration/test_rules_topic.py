"""`moments rules publish` and `list` against a real broker: the topic is created compacted with
one partition, records are keyed `rules`, and list shows every version with its validity."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from jobs.cli import main

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_publish_creates_a_compacted_topic_and_list_shows_the_versions(
    kafka_bootstrap, kafka_admin, capsys
):
    from kafka import KafkaProducer
    from kafka.admin import ConfigResource, ConfigResourceType

    topic = f"test.rules.{uuid.uuid4().hex[:8]}"
    flags = ["--bootstrap-servers", kafka_bootstrap, "--topic", topic]
    rules = str(ROOT / "examples" / "rules.yaml")
    try:
        assert main(["rules", "publish", rules, "--version", "v1", *flags]) == 0
        assert main(["rules", "publish", rules, "--version", "v2", "--effective-from",
                     "1763805600000", *flags]) == 0  # fmt: skip
        out = capsys.readouterr().out
        assert f"published v1 (at the job's watermark) to {topic}[0]@0" in out
        assert f"(from 1763805600000 (2025-11-22T10:00:00.000Z)) to {topic}[0]@1" in out
        [described] = kafka_admin.describe_topics([topic])
        assert len(described["partitions"]) == 1
        [response] = kafka_admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        [resource] = response.resources
        entries = {entry[0]: entry[1] for entry in resource[4]}
        assert entries["cleanup.policy"] == "compact"
        # A record no publish would write (by hand, or an older tool): list shows it invalid.
        producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
        bad = {"version": "v3", "effective_from": None, "rules": {"rules": []}}
        producer.send(topic, key=b"rules", value=json.dumps(bad).encode()).get(timeout=30)
        producer.close()
        assert main(["rules", "list", *flags, "--status-topic", f"{topic}.status"]) == 0
        lines = capsys.readouterr().out.splitlines()
        header = ["offset", "version", "effective_from", "validity", "running", "job"]
        assert lines[0].split() == header
        assert lines[1].split()[:4] == ["0", "v1", "job", "watermark"]
        assert lines[2].split()[:3] == ["1", "v2", "1763805600000"]
        assert "valid (4 rule(s))" in lines[2]
        assert lines[3].split()[:2] == ["2", "v3"]
        assert "invalid: rule -: rules: must be a non-empty list of rules" in lines[3]
        # No job has a status topic here: the last column says nothing, and a line says why.
        assert all(line.rstrip().endswith("-") for line in lines[1:4]), lines
        assert lines[4] == f"({topic}.status: no such topic: no job has reported a version yet)"
    finally:
        kafka_admin.delete_topics([topic], timeout_ms=30_000)
