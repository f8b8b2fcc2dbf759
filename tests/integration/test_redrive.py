"""`moments redrive` on a real dead-letter topic and ledger: after the fix, the picked letters are
delivered with their action ids, what was accepted meanwhile (an earlier redrive) is never sent
again, and what still fails is dead-lettered again."""

from __future__ import annotations

import uuid

import pytest

from jobs import cli
from moments_testing.vendors import BrazeServer
from tests.integration.test_deliver import VENDOR_ENV_NAMES, produce, read_all
from tests.unit.vendors.actions import make_action

pytestmark = pytest.mark.integration


def test_redrive_after_a_fix_never_duplicates(
    kafka_bootstrap, kafka_topic, crm_dsn, monkeypatch, capsys
):
    topic, dlq = kafka_topic(partitions=2), kafka_topic()
    run = uuid.uuid4().hex[:8]
    renamed = [
        make_action(user_id=f"u-{i}", campaign_id="spring", rule_id=f"{run}_{i % 2}")
        for i in range(10)
    ]
    still_broken = [
        make_action(user_id=f"b-{i}", campaign_id="gone", rule_id=run) for i in range(2)
    ]
    fine = [make_action(user_id=f"f-{i}", rule_id=run) for i in range(5)]
    produce(kafka_bootstrap, topic, renamed + still_broken + fine)
    with BrazeServer(known_campaigns={"autumn"}) as braze:
        for name in VENDOR_ENV_NAMES:
            monkeypatch.delenv(name, raising=False)
        for name, value in {
            "BRAZE_API_KEY": braze.api_key,
            "BRAZE_REST_ENDPOINT": braze.url,
            "DELIVER_LEDGER_DSN": crm_dsn,
        }.items():
            monkeypatch.setenv(name, value)
        common = ["--bootstrap-servers", kafka_bootstrap, "--dlq-topic", dlq]
        deliver = ["deliver", *common, "--topic", topic, "--group-id", f"g-{run}"]
        assert cli.main([*deliver, "--max-idle", "2s"]) == 0
        assert len(read_all(kafka_bootstrap, dlq, expected=12)) == 12
        assert braze.delivered_ids() == {a.action_id for a in fine}

        braze.known_campaigns = {"autumn", "spring"}  # the fix
        first_rule = ["--rule-ids", f"{run}_0"]
        assert cli.main(["redrive", *common, *first_rule]) == 0
        assert braze.delivered_ids() == {a.action_id for a in fine + renamed[0::2]}
        capsys.readouterr()

        assert cli.main(["redrive", *common]) == 1  # the two "gone" ones fail again
        out = capsys.readouterr().out
        assert braze.delivered_ids() == {a.action_id for a in fine + renamed}
        assert braze.duplicates() == 0
        assert "deliveries: 5" in out and "duplicates skipped: 5" in out
        assert "dead-lettered: 2" in out

        assert cli.main(["redrive", *common, "--reason-contains", "campaign"]) == 1
        assert braze.duplicates() == 0
    letters = read_all(kafka_bootstrap, dlq, expected=16)
    again = [x for x in letters[12:] if x["action"]["campaign_id"] == "gone"]
    assert len(letters) == 16 and len(again) == 4
    assert {x["action"]["action_id"] for x in again} == {a.action_id for a in still_broken}
