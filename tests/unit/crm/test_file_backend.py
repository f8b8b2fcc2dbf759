"""The CRM snapshot file as a backend: parsing, errors with file and line, lookups, the factory's
CRM_BACKEND=file, `moments run --profiles` and the column types of `moments crm load`."""

from __future__ import annotations

import argparse
import asyncio
import json
import re

import pytest

from jobs import detect
from jobs.cli import main
from jobs.detection.config import DetectConfig
from jobs.options import OptionsError
from udfs.crm import CrmConfigError, build_lookup, from_env
from udfs.crm.base import ProfileLookup
from udfs.crm.factory import build_prefetcher
from udfs.crm.file import FileProfiles, SnapshotError, load_profiles, read_snapshot
from udfs.crm.snapshot import column_types

LINES = [
    {"user_id": "u-1", "segment": "vip", "consent_push": True, "score": 3},
    {"user_id": "u-2", "segment": "regular", "timezone": "Europe/Paris"},
    {"user_id": "u-3"},
]


def write(path, lines):
    path.write_text(
        "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    )
    return path


@pytest.fixture
def snapshot(tmp_path):
    return write(tmp_path / "profiles.jsonl", [LINES[0], "", LINES[1], "  ", LINES[2]])


def test_every_profile_has_every_field_in_order_of_first_appearance(snapshot):
    profiles = load_profiles(snapshot)
    assert isinstance(profiles, ProfileLookup)
    assert profiles.fields == ("segment", "consent_push", "score", "timezone")
    assert len(profiles) == 3
    assert profiles.lookup("u-2").profile == {
        "segment": "regular",
        "consent_push": None,
        "score": None,
        "timezone": "Europe/Paris",
    }
    assert list(profiles.lookup("u-1").profile) == list(profiles.fields)
    assert profiles.lookup("u-3").profile == dict.fromkeys(profiles.fields)


def test_lookup_results(snapshot):
    profiles = load_profiles(snapshot)
    found, missing = profiles.lookup("u-1"), profiles.lookup("u-404")
    assert (found.status, found.profile["segment"], found.profile["score"]) == ("ok", "vip", 3)
    assert "user_id" not in found.profile
    assert (missing.status, missing.profile) == ("missing", {})
    assert {u: r.status for u, r in profiles.lookup_many(["u-1", "u-9"]).items()} == {
        "u-1": "ok",
        "u-9": "missing",
    }
    assert asyncio.run(profiles.alookup("u-2")).profile["timezone"] == "Europe/Paris"
    profiles.close()
    assert profiles.lookup("u-1").status == "ok"  # close releases nothing the snapshot needs


def test_read_once_per_process_while_the_file_is_unchanged(snapshot):
    first, second = load_profiles(snapshot), load_profiles(snapshot)
    assert first.snapshot is second.snapshot
    write(snapshot, [*LINES, {"user_id": "u-4", "segment": "new"}])
    assert load_profiles(snapshot).lookup("u-4").status == "ok"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "a JSON object is expected, not list"),
        ('{"segment": "vip"}', "user_id must be a non-empty string"),
        ('{"user_id": ""}', "user_id must be a non-empty string"),
        ('{"user_id": 42}', "user_id must be a non-empty string"),
        ('{"user_id": "u-9", "a": 1, "a": 2}', "field 'a' appears twice"),
        ('{"user_id": "u-9", "score": NaN}', "NaN is not a JSON value"),
        ('{"user_id": "u-9", "name": "a\\u0000b"}', "U+0000"),
        ('{"user_id": "u-9", "": 1}', "empty"),
        ('{"user_id": "u-9", "' + "x" * 64 + '": 1}', "longer than 63 bytes"),
    ],
)
def test_a_bad_line_is_an_error_naming_file_and_line(tmp_path, line, reason):
    path = write(tmp_path / "p.jsonl", [LINES[0], "", line])
    with pytest.raises(SnapshotError, match=rf"^{re.escape(str(path))}:3: .*{re.escape(reason)}"):
        read_snapshot(path)


def test_a_duplicate_user_is_an_error_naming_both_lines(tmp_path):
    path = write(tmp_path / "p.jsonl", [LINES[0], LINES[1], {"user_id": "u-1"}])
    with pytest.raises(SnapshotError, match=rf"^{path}:3: user_id 'u-1' already on line 1$"):
        load_profiles(path)


def test_unreadable_files(tmp_path):
    with pytest.raises(SnapshotError, match="cannot read"):
        load_profiles(tmp_path / "nope.jsonl")
    (tmp_path / "latin1.jsonl").write_bytes(b'{"user_id": "u-1"}\n{"user_id": "\xe9"}\n')
    with pytest.raises(SnapshotError, match=r"latin1.jsonl:2: not UTF-8"):
        read_snapshot(tmp_path / "latin1.jsonl")


def test_the_factory_builds_the_file_backend_uncached(snapshot):
    settings = from_env({"CRM_PROFILES_FILE": str(snapshot)})
    assert settings.backend == "file"
    assert settings.describe() == f"CRM: file {snapshot} (read once into memory)"
    explicit = from_env({"CRM_BACKEND": "file", "CRM_PROFILES_FILE": str(snapshot)})
    lookup = build_lookup(explicit)
    assert isinstance(lookup, FileProfiles)  # already in memory: no cache in front
    assert lookup.lookup("u-1").status == "ok"
    prefetcher = build_prefetcher(settings)
    try:
        assert prefetcher.wait("u-1", timeout_s=2).profile["segment"] == "vip"
        assert prefetcher.wait("u-404", timeout_s=2).status == "missing"
    finally:
        prefetcher.close()


def test_a_dsn_still_means_postgres_and_the_file_needs_its_variable(snapshot, tmp_path):
    both = {"CRM_DSN": "postgresql://moments@db/crm", "CRM_PROFILES_FILE": str(snapshot)}
    assert from_env(both).backend == "postgres"
    with pytest.raises(CrmConfigError, match="CRM_BACKEND=file needs CRM_PROFILES_FILE"):
        from_env({"CRM_BACKEND": "file"})
    with pytest.raises(CrmConfigError, match="CRM_PROFILES_FILE: .*no such file"):
        from_env({"CRM_PROFILES_FILE": str(tmp_path / "nope.jsonl")})


def test_a_relative_path_is_made_absolute_for_the_workers(snapshot, monkeypatch):
    monkeypatch.chdir(snapshot.parent)
    assert from_env({"CRM_PROFILES_FILE": snapshot.name}).profiles_file == str(snapshot)


RULES = """\
rules:
  - id: quick_add
    pattern: {type: sequence, steps: [{event_type: view}, {event_type: add}], within: 10s}
    action: {name: offer, destinations: [kafka]}
"""


def run_config(tmp_path, *argv: str, environ=None) -> DetectConfig:
    rules, events = tmp_path / "rules.yaml", tmp_path / "events.jsonl"
    rules.write_text(RULES)
    events.write_text("")
    parser = argparse.ArgumentParser()
    detect.configure_parser(parser)
    args = parser.parse_args(
        ["--rules", str(rules), "--events", str(events), "--out", str(tmp_path / "a"), *argv]
    )
    return DetectConfig.from_args(args, environ or {})


def test_run_profiles_makes_the_file_the_crm(tmp_path, snapshot):
    config = run_config(tmp_path, "--profiles", str(snapshot))
    assert (config.crm.backend, config.crm.profiles_file) == ("file", str(snapshot))
    assert config.profiles_path == snapshot
    # A DSN in the shell for other commands does not fight the flag; CRM_BACKEND=file agrees.
    shell = {"CRM_DSN": "postgresql://moments@db/crm", "CRM_TIMEOUT_MS": "50"}
    config = run_config(tmp_path, "--profiles", str(snapshot), environ=shell)
    assert (config.crm.backend, config.crm.timeout_ms) == ("file", 50)
    agreeing = {"CRM_BACKEND": "file"}
    assert run_config(tmp_path, "--profiles", str(snapshot), environ=agreeing).crm.backend == "file"


def test_run_profiles_with_another_backend_set_is_an_error(tmp_path, snapshot):
    with pytest.raises(OptionsError, match="--profiles .* CRM_BACKEND=postgres is set"):
        run_config(
            tmp_path,
            "--profiles",
            str(snapshot),
            environ={"CRM_BACKEND": "postgres", "CRM_DSN": "postgresql://moments@db/crm"},
        )


def test_run_profiles_checks_the_file_before_any_jvm(tmp_path, snapshot, capsys):
    with pytest.raises(OptionsError, match="--profiles: .*no such file"):
        run_config(tmp_path, "--profiles", str(tmp_path / "nope.jsonl"))
    bad = write(tmp_path / "bad.jsonl", [LINES[0], LINES[0]])
    with pytest.raises(OptionsError, match=r"CRM_PROFILES_FILE: .*bad.jsonl:2: user_id 'u-1'"):
        run_config(tmp_path, "--profiles", str(bad))
    with pytest.raises(CrmConfigError, match=r"bad.jsonl:2: user_id 'u-1' already on line 1"):
        from_env({"CRM_PROFILES_FILE": str(bad)})


def test_column_types_keep_each_json_type(tmp_path):
    path = write(
        tmp_path / "p.jsonl",
        [
            {"user_id": "a", "s": "x", "b": True, "i": 1, "f": 1.5, "n": None, "m": 1, "o": {}},
            {"user_id": "b", "s": None, "b": False, "i": -(2**63), "f": 2.0, "m": "1"},
            {"user_id": "c", "big": 2**64, "l": [1]},
        ],
    )
    assert column_types(read_snapshot(path)) == {
        "s": "text",
        "b": "boolean",
        "i": "bigint",
        "f": "double precision",
        "n": "text",
        "m": "jsonb",
        "o": "jsonb",
        "big": "jsonb",
        "l": "jsonb",
    }


def test_crm_load_needs_a_database(tmp_path, snapshot, monkeypatch, capsys):
    for name in ("CRM_DSN", "CRM_DSN_FILE", "CRM_TABLE"):
        monkeypatch.delenv(name, raising=False)
    assert main(["crm", "load", "--profiles", str(snapshot)]) == 2
    assert "CRM_DSN" in capsys.readouterr().err


def test_nested_objects_come_in_the_order_jsonb_gives_them_back(tmp_path):
    path = write(
        tmp_path / "p.jsonl",
        ['{"user_id": "a", "z": 1, "prefs": {"lang": 1, "b": {"cc": 2, "d": 3}, "ab": 4}}'],
    )
    profile = load_profiles(path).lookup("a").profile
    assert list(profile) == ["z", "prefs"]  # top level: the table's column order
    assert json.dumps(profile["prefs"]) == '{"b": {"d": 3, "cc": 2}, "ab": 4, "lang": 1}'
