"""The JVM release operator packs a user's released events into one record's `batch` field
(udfs/jvm ReleaseOnWatermark.pack); Python reads them back (jobs/operators/decode.py
released_events) as the same events decode_payload makes of each record alone, and the same raw
bytes, whatever the strings hold."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobs.connectors import payload as p
from jobs.operators.decode import decode_payload, released_events, released_raw
from udfs.model import EngineEvent

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
JVM = ROOT / "udfs/jvm/src/dev/micromoments/flink"
CORE = [JVM / "ReleaseOnWatermark.java", JVM / "ActivityFilter.java"]
HARNESS = Path(__file__).parent / "jvm" / "ReleasePackHarness.java"


@pytest.fixture(scope="module")
def pack(tmp_path_factory):
    import pyflink

    classes = tmp_path_factory.mktemp("release-pack-classes")
    classpath = os.path.join(os.path.dirname(pyflink.__file__), "lib", "*")
    subprocess.run(
        ["javac", "-cp", classpath, "-d", str(classes), *map(str, CORE), str(HARNESS)], check=True
    )

    def run(rows: list[tuple]) -> str:
        def hex_or_null(value):
            if value is None:
                return "-"
            return (value if isinstance(value, bytes) else value.encode()).hex()

        lines = ["\t".join([str(ts), *(hex_or_null(v) for v in rest)]) for ts, *rest in rows]
        done = subprocess.run(
            ["java", "-cp", f"{classes}{os.pathsep}{classpath}", "ReleasePackHarness"],
            input="".join(line + "\n" for line in lines).encode(),
            capture_output=True,
            check=True,
        )
        return done.stdout.decode("utf-8").rstrip("\n")

    return run


def _as_payload(ts, event_id, event_type, device, properties, raw) -> list:
    row = [None] * len(p.PAYLOAD_FIELDS)
    row[p.USER_ID], row[p.VALUE], row[p.DECODED] = "k", raw, True
    row[p.TS], row[p.EVENT_ID], row[p.EVENT_TYPE] = ts, event_id, event_type
    row[p.DEVICE], row[p.PROPERTIES] = device, properties
    return row


TRICKY = ["plain", 'quo"te', "back\\slash", "tab\there", "nl\nx", "\x00\x1f", "ü 用户 😀", "</>"]
texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)


def test_tricky_strings_round_trip(pack):
    rows = [
        (
            i * 10,
            f"e{i}-{text}",
            text,
            None if i % 3 == 0 else text,
            json.dumps({"k": text, "n": 1.5, "ok": True}, ensure_ascii=i % 2 == 0),
            b'{"raw": "' + text.encode() + b'\xff"}',  # not even UTF-8
        )
        for i, text in enumerate(TRICKY)
    ]
    rows.append((5, "nulls", "t", None, None, b""))
    _check(pack, rows)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 2**53), texts, texts, st.none() | texts, st.binary(max_size=20)),
        min_size=1,
        max_size=5,
    )
)
def test_any_strings_round_trip(pack, items):
    rows = [(ts, eid, etype, device, "{}", raw) for ts, eid, etype, device, raw in items]
    _check(pack, rows)


def _check(pack, rows: list[tuple]) -> None:
    last = EngineEvent(10**12, "last", "t", None, {})
    events, raws = released_events(pack(rows), last, b"own")
    expected = [decode_payload(_as_payload(*row)) for row in rows]
    assert events == [*expected, last]
    assert [released_raw(r) for r in raws] == [row[5] for row in rows] + [b"own"]
