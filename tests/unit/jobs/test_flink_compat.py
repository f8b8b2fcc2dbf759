"""jobs/flink_compat.py names the PyFlink it was written against; a different one installed (or
pinned) must be checked by tests/integration/test_flink_compat.py before it is trusted."""

from __future__ import annotations

import tomllib
from importlib.metadata import version
from pathlib import Path

from jobs import flink_compat

ROOT = Path(__file__).resolve().parents[3]


def test_the_private_calls_were_checked_against_the_pinned_pyflink():
    pins = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"apache-flink=={flink_compat.PYFLINK_VERSION}" in pins
    assert version("apache-flink") == flink_compat.PYFLINK_VERSION


def test_only_flink_compat_reaches_past_pyflinks_public_api():
    private = ("_j_", "java_gateway", "java_utils")
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "jobs").rglob("*.py")
        if path.name != "flink_compat.py" and any(word in path.read_text() for word in private)
    ]
    assert not offenders
