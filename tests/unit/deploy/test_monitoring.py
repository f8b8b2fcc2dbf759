"""deploy/monitoring: the alert rules pass `promtool check` and their own `promtool test rules`; the
Grafana dashboard is well formed, every field of it is one Grafana's schema knows, every query
parses as PromQL (promtool, as recording rules), and every `moments_deliver_*` series it or an
alert reads is one `moments deliver` exports."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from udfs.delivery.metrics import DeliveryMetrics

MONITORING = Path(__file__).resolve().parents[3] / "deploy" / "monitoring"
SERIES = re.compile(r"\b(moments_deliver_[a-z_]+)")


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        # `make setup` installs it (Debian's prometheus package); CI must never skip this.
        if os.environ.get("CI"):
            pytest.fail("promtool is missing: run make setup")
        pytest.skip("promtool is missing: run make setup")
    return path


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=MONITORING, capture_output=True, text=True, timeout=60)


def dashboard() -> dict:
    return json.loads((MONITORING / "dashboard.json").read_text())


def queries() -> list[str]:
    return [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])]


def exported_series() -> set[str]:
    """Sample names per metric type (a labelled metric has no sample until first used)."""
    by_type = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    return {
        family.name + suffix
        for family in DeliveryMetrics().registry.collect()
        for suffix in by_type.get(family.type, ("",))
    }


def test_alert_rules_check_and_pass_their_unit_tests(promtool):
    checked = run(promtool, "check", "rules", "alerts.yaml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = run(promtool, "test", "rules", "alerts.test.yaml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    names = {
        r["alert"]
        for g in yaml.safe_load((MONITORING / "alerts.yaml").read_text())["groups"]
        for r in g["rules"]
    }
    tests = (MONITORING / "alerts.test.yaml").read_text()
    assert all(f"alertname: {name}" in tests for name in names)


def test_dashboard_queries_are_promql(promtool, tmp_path):
    # Grafana's own variables are not PromQL: give them the values Grafana would.
    rules = [
        {"record": f"dashboard:query_{i}", "expr": expr.replace("$__rate_interval", "5m")}
        for i, expr in enumerate(queries())
    ]
    path = tmp_path / "dashboard_rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = run(promtool, "check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_dashboard_is_well_formed():
    board = dashboard()
    assert board["uid"] and board["title"] and isinstance(board["schemaVersion"], int)
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}"
            assert [t["refId"] for t in panel["targets"]] == [
                chr(65 + i) for i in range(len(panel["targets"]))
            ]
    assert any(v["name"] == "DS_PROMETHEUS" for v in board["templating"]["list"])


def test_every_delivery_series_read_is_exported():
    exported = exported_series()
    alerts = (MONITORING / "alerts.yaml").read_text()
    read = set(SERIES.findall(alerts)) | {n for q in queries() for n in SERIES.findall(q)}
    assert read
    missing = {name for name in read if name not in exported}
    assert not missing, f"dashboard or alerts read series the job does not export: {missing}"
    assert {"moments_deliver_delivered_total", "moments_deliver_consumer_lag"} <= read


def _fields_lost(ours, back, path: str = "") -> list[str]:
    """Paths of `ours` missing from `back` (what the round trip dropped)."""
    if isinstance(ours, dict):
        if not isinstance(back, dict):
            return [path]
        return [
            lost
            for key, value in ours.items()
            for lost in (
                [f"{path}/{key}"]
                if key not in back
                else _fields_lost(value, back[key], f"{path}/{key}")
            )
        ]
    if isinstance(ours, list) and isinstance(back, list) and len(ours) == len(back):
        return [
            lost
            for i, pair in enumerate(zip(ours, back, strict=True))
            for lost in _fields_lost(*pair, f"{path}[{i}]")
        ]
    return []


def test_every_dashboard_field_is_one_grafanas_schema_knows():
    # The Grafana Foundation SDK's models are generated from Grafana's dashboard schema and keep
    # only the fields it defines: a misspelled or invented field (gridpos, unitt) is dropped.
    from grafana_foundation_sdk.models.dashboard import Dashboard

    def round_trip(board: dict) -> dict:
        back = Dashboard.from_json(board).to_json()
        return json.loads(json.dumps(back, default=lambda model: model.to_json()))

    board = dashboard()
    assert _fields_lost(board, round_trip(board)) == []
    broken = json.loads(json.dumps(board))
    broken["panels"][1]["gridpos"] = broken["panels"][1].pop("gridPos")
    assert _fields_lost(broken, round_trip(broken)) == ["/panels[1]/gridpos"]  # the check can fail
