"""deploy/produce_events.py is a script, not a package module: load it from its file."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "deploy" / "produce_events.py"


@pytest.fixture(scope="session")
def produce_events():
    spec = importlib.util.spec_from_file_location("produce_events", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
