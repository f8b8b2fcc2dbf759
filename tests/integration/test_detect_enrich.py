"""CRM enrichment in `moments run` against the real PostgreSQL CRM: a known user gets its profile
(`ok`), an unknown one `missing`, and with the CRM down every action is still emitted as
`unavailable`. Both enrichment layouts (sync cached lookups, AsyncDataStream) are run."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from moments_testing import launcher
from tests.integration.detect_data import RULES_YAML

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
EVENTS = [
    {"event_id": "e1", "user_id": "u-1", "event_type": "add_to_cart", "ts": 1_000},
    {"event_id": "e2", "user_id": "u-999", "event_type": "add_to_cart", "ts": 1_100},
]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_with_crm(tmp_path: Path, dsn: str, layout: str) -> dict[str, dict]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES_YAML)
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps(e) + "\n" for e in EVENTS))
    out = tmp_path / f"actions-{layout}.jsonl"
    env = {key: value for key, value in os.environ.items() if not key.startswith("CRM_")} | {
        "CRM_DSN": dsn,
        "CRM_TIMEOUT_MS": "300",
        "CRM_RETRIES": "1",
    }
    result = launcher.run_moments(
        "run",
        "--rules",
        str(rules),
        "--events",
        str(events),
        "--out",
        str(out),
        "--enrichment-layout",
        layout,
        env=env,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    actions = [json.loads(line) for line in out.read_text().splitlines()]
    return {(a["user_id"], a["rule_id"]): a for a in actions}


@pytest.mark.parametrize("layout", ["inline", "sync", "async"])
def test_known_and_unknown_users(tmp_path, crm_dsn, layout):
    actions = run_with_crm(tmp_path, crm_dsn, layout)
    known = actions[("u-1", "cart_silence")]
    assert known["enrichment"] == "ok"
    assert known["profile"]["segment"] == "vip" and "user_id" not in known["profile"]
    unknown = actions[("u-999", "cart_silence")]
    assert unknown["enrichment"] == "missing" and unknown["profile"] == {}
    assert len(actions) == 4  # cart_silence and no_checkout for each user


@pytest.mark.parametrize("layout", ["inline", "sync", "async"])
def test_crm_down_still_emits_every_action(tmp_path, layout):
    actions = run_with_crm(tmp_path, f"postgresql://moments@127.0.0.1:{closed_port()}/crm", layout)
    assert len(actions) == 4
    assert {a["enrichment"] for a in actions.values()} == {"unavailable"}
    assert all(a["profile"] == {} for a in actions.values())
