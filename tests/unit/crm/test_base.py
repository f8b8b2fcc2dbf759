from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from decimal import Decimal

import pytest

from udfs.crm.base import ThrottledWarning, backoff_s, describe_error
from udfs.crm.postgres import json_safe, table_identifier


def test_error_descriptions_mask_secrets_and_contact_details():
    error = OSError(
        "connect postgresql://moments:hunter2@db:5432/crm password=hunter2 "
        "Bearer tok-123 for ann@example.com\nsecond line"
    )
    text = describe_error(error)
    assert text.startswith("OSError: connect postgresql://moments:***@db:5432/crm")
    for secret in ("hunter2", "tok-123", "ann@example.com", "second line"):
        assert secret not in text


def test_backoff_doubles_up_to_a_cap_and_honours_a_floor():
    assert [backoff_s(attempt) for attempt in range(6)] == [0.01, 0.02, 0.04, 0.08, 0.1, 0.1]
    assert backoff_s(0, at_least_s=0.5) == 0.5


def test_warnings_are_throttled(caplog):
    warn = ThrottledWarning(logging.getLogger("test.crm"), interval_s=3600)
    with caplog.at_level(logging.WARNING, logger="test.crm"):
        for _ in range(5):
            warn("CRM down: %s", "timeout")
    assert [record.getMessage() for record in caplog.records] == ["CRM down: timeout"]


def test_column_values_become_json_safe():
    row = {
        "at": dt.datetime(2026, 11, 23, 15, 0, tzinfo=dt.UTC),
        "day": dt.date(2026, 11, 23),
        "score": Decimal("1.50"),
        "id": uuid.UUID(int=1),
        "raw": b"\x00\x01",
        "tags": ["a", 1],
        "nan": float("nan"),
    }
    safe = json_safe(row)
    json.dumps(safe)
    assert safe["at"] == "2026-11-23T15:00:00+00:00"
    assert (safe["day"], safe["score"], safe["raw"], safe["nan"]) == (
        "2026-11-23",
        "1.50",
        "AAE=",
        None,
    )


@pytest.mark.parametrize("name", ["crm_profiles", "crm.profiles", "_t1"])
def test_table_names_that_are_identifiers_pass(name):
    table_identifier(name)


@pytest.mark.parametrize("name", ["", "a.b.c", "1abc", "profiles; drop table x", 'a"b', "a b"])
def test_anything_else_is_refused(name):
    with pytest.raises(ValueError, match="not an identifier"):
        table_identifier(name)
