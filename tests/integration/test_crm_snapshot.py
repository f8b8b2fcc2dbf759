"""A CRM snapshot loaded into the real PostgreSQL (`moments crm load`) gives exactly the profiles
the file backend gives: same fields, same order, same JSON types, for every user and a missing one.
"""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest

from jobs.cli import main
from udfs.crm.file import SnapshotError, load_profiles
from udfs.crm.postgres import PostgresProfileLookup
from udfs.crm.snapshot import load_snapshot

pytestmark = pytest.mark.integration

PROFILES = [
    {
        "user_id": "u-1",
        "segment": "vip",
        "consent_push": True,
        "orders": 12,
        "ltv": 1234.5,
        "timezone": "America/New_York",
        "tags": ["a", "b"],
        "prefs": {"lang": "en", "channels": ["push", "email"], "weight": 0.1},
        "code": 7,
    },
    {
        "user_id": "u-2",
        "segment": None,
        "consent_push": False,
        "orders": -(2**63),
        "ltv": 1e-7,
        "code": "A7",
        "big": 2**70,
        "note": 'émoji ✓, quotes " and \\ backslash, tab\t',
    },
    {"user_id": "u 3/ü", "orders": 0, "ltv": -0.0, "timezone": "Asia/Kolkata"},
    {"user_id": "u-4"},
]


@pytest.fixture
def snapshot(tmp_path):
    path = tmp_path / "profiles.jsonl"
    path.write_text("\n".join(json.dumps(p, ensure_ascii=False) for p in PROFILES) + "\n")
    return path


@pytest.fixture
def fresh_table(crm_dsn):
    table = f"crm_snapshot_{uuid.uuid4().hex[:10]}"
    yield table
    with psycopg.connect(crm_dsn) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")


def exact(result) -> tuple[str, str]:
    """Status and the profile as JSON text: 1 and 1.0, or key order, would differ."""
    return result.status, json.dumps(result.profile)


def test_the_loaded_table_and_the_file_give_the_same_profiles(
    crm_dsn, snapshot, fresh_table, monkeypatch, capsys
):
    monkeypatch.setenv("CRM_DSN", crm_dsn)
    monkeypatch.delenv("CRM_DSN_FILE", raising=False)
    code = main(["crm", "load", "--profiles", str(snapshot), "--table", fresh_table])
    assert code == 0, capsys.readouterr().err
    assert f"loaded 4 profiles into {fresh_table}" in capsys.readouterr().out

    from_file = load_profiles(snapshot)
    database = PostgresProfileLookup(crm_dsn, table=fresh_table, timeout_s=5.0)
    try:
        users = [p["user_id"] for p in PROFILES] + ["u-404"]
        for user in users:
            assert exact(database.lookup(user)) == exact(from_file.lookup(user)), user
        batch = database.lookup_many(users)
        assert {u: exact(r) for u, r in batch.items()} == {
            u: exact(from_file.lookup(u)) for u in users
        }
    finally:
        database.close()
    assert from_file.lookup("u-404").status == "missing"
    assert from_file.lookup("u-2").profile["big"] == 2**70
    assert from_file.lookup("u-4").profile == dict.fromkeys(from_file.fields)


def test_an_existing_table_is_kept_unless_replaced(crm_dsn, snapshot, fresh_table, tmp_path):
    assert load_snapshot(crm_dsn, fresh_table, snapshot) == 4
    with pytest.raises(SnapshotError, match="already exists"):
        load_snapshot(crm_dsn, fresh_table, snapshot)
    smaller = tmp_path / "smaller.jsonl"
    smaller.write_text('{"user_id": "u-9", "segment": "new"}\n')
    assert load_snapshot(crm_dsn, fresh_table, smaller, replace=True) == 1
    database = PostgresProfileLookup(crm_dsn, table=fresh_table, timeout_s=5.0)
    try:
        assert database.lookup("u-1").status == "missing"
        assert database.lookup("u-9").profile == {"segment": "new"}
    finally:
        database.close()


def test_a_bad_snapshot_creates_no_table(crm_dsn, fresh_table, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"user_id": "u-1"}\n{"user_id": "u-1"}\n')
    with pytest.raises(SnapshotError, match=r"bad.jsonl:2: user_id 'u-1' already on line 1"):
        load_snapshot(crm_dsn, fresh_table, bad)
    with psycopg.connect(crm_dsn) as conn:
        assert conn.execute("SELECT to_regclass(%s)", (fresh_table,)).fetchone()[0] is None
