"""The JVM release operator packs the users' released events into one record's `batch` field
(udfs/jvm ReleaseOnWatermark.packStep); Python reads them back (jobs/operators/decode.py
released_users) as the same users with the same events decode_payload makes of each record
alone, and the same raw bytes, whatever the strings hold."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobs.connectors import payload as p
from jobs.operators.decode import decode_payload, released_raw, released_users
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

        lines = [
            "\t".join([hex_or_null(user), str(ts), *(hex_or_null(v) for v in rest)])
            for user, ts, *rest in rows
        ]
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
    row[p.USER_ID], row[p.VALUE], row[p.DECODED] = "u", raw, True
    row[p.TS], row[p.EVENT_ID], row[p.EVENT_TYPE] = ts, event_id, event_type
    row[p.DEVICE], row[p.PROPERTIES] = device, properties
    return row


TRICKY = ["plain", 'quo"te', "back\\slash", "tab\there", "nl\nx", "\x00\x1f", "ü 用户 😀", "</>"]
texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)


def test_tricky_strings_round_trip(pack):
    rows = [
        (
            "u1" if i % 2 else text,  # users with tricky ids too
            i * 10,
            f"e{i}-{text}",
            text,
            None if i % 3 == 0 else text,
            json.dumps({"k": text, "n": 1.5, "ok": True}, ensure_ascii=i % 2 == 0),
            b'{"raw": "' + text.encode() + b'\xff"}',  # not even UTF-8
        )
        for i, text in enumerate(TRICKY)
    ]
    rows.append(("u1", 5, "nulls", "t", None, None, b""))
    _check(pack, rows)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["u1", 'q"u', "用户"]) | texts,
            st.integers(0, 2**53),
            texts,
            texts,
            st.none() | texts,
            st.binary(max_size=20),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_any_strings_round_trip(pack, items):
    rows = [
        (user, ts, eid, etype, device, "{}", raw) for user, ts, eid, etype, device, raw in items
    ]
    _check(pack, rows)


def _check(pack, rows: list[tuple]) -> None:
    """`rows` of (user, ts, event_id, event_type, device, properties, raw): the first user's
    carrier (its last record, left out of `batch`) is added here."""
    first = rows[0][0]
    carrier = (first, 10**12, "last", "t", None, None, b"own")
    batch = pack([*rows, carrier])
    users: dict[str, list[tuple]] = {}
    for row in rows:
        users.setdefault(row[0], []).append(row[1:])
    last = EngineEvent(10**12, "last", "t", None, {})
    got = released_users(batch, first, last, b"own")
    assert [user for user, _, _ in got] == list(users)
    for (user, events, raws), (_, expected_rows) in zip(got, users.items(), strict=True):
        expected = [decode_payload(_as_payload(*row)) for row in expected_rows]
        expected_raws = [row[5] for row in expected_rows]
        if user == first:
            expected, expected_raws = [*expected, last], [*expected_raws, b"own"]
        assert events == expected
        assert [released_raw(r) for r in raws] == expected_raws
