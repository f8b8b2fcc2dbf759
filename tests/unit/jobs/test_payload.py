"""The Kafka payload's fields are named once (jobs/connectors/payload.py): the SQL query, the
PyFlink row type, the detect operator's indices and the JVM activity filter's constants agree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from jobs.connectors import payload
from jobs.connectors.prefilter import keyed_records_query

ROOT = Path(__file__).resolve().parents[3]
JVM = ROOT / "udfs" / "jvm" / "src" / "dev" / "micromoments" / "flink"


@pytest.mark.parametrize("source", ["ActivityFilter.java", "ReleaseOnWatermark.java"])
def test_the_java_payload_indices_are_the_python_ones(source):
    text = (JVM / source).read_text()
    start = text.index("// Payload fields")
    block = text[start : text.index("\n\n", start)]
    constants = dict(re.findall(r"static final int (\w+) = (\d+);", block))
    assert constants, f"no payload constants found in {source}"
    for name, index in constants.items():
        assert payload.INDEX[name.lower()] == int(index), name


def test_the_query_selects_the_payload_in_order():
    query = keyed_records_query(None)
    assert payload.sql_row("d") in query
    names = [name for name, _ in payload.PAYLOAD_FIELDS]
    assert names[: payload.DECODED] == ["user_id", "value", "topic", "partition", "offset"]


def test_the_row_type_has_one_field_per_payload_field():
    row_type = payload.row_type()
    (key, body) = row_type.get_field_types()
    assert len(body.get_field_types()) == len(payload.PAYLOAD_FIELDS)
