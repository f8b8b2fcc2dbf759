"""`moments run` configuration: flags and environment validated before any JVM starts."""

from __future__ import annotations

import argparse
import socket

import pytest

from jobs import detect
from jobs.cli import main
from jobs.connectors.kafka_sink import kafka_sink_ddl
from jobs.connectors.kafka_source import kafka_events_table_ddl
from jobs.connectors.prefilter import keyed_records_query
from jobs.detection.config import DetectConfig
from jobs.detection.environment import checkpoint_storage_dir
from jobs.options import OptionsError as ConfigError

RULES = """\
rules:
  - id: quick_add
    pattern: {type: sequence, steps: [{event_type: view}, {event_type: add}], within: 10s}
    action: {name: offer, destinations: [kafka]}
"""


@pytest.fixture
def files(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    events = tmp_path / "events.jsonl"
    events.write_text("")
    return rules, events, tmp_path


@pytest.fixture
def listening_port():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    detect.configure_parser(parser)
    return parser.parse_args(argv)


def config(*argv: str, environ: dict[str, str] | None = None) -> DetectConfig:
    return DetectConfig.from_args(parse(*argv), environ or {})


def test_local_runs_checkpoint_to_disk_and_flink_cli_runs_keep_the_cluster_storage(
    files, listening_port, tmp_path
):
    rules, _, _ = files
    kafka = {"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{listening_port}"}
    cfg = config("--rules", str(rules), environ=kafka)
    local = checkpoint_storage_dir(cfg, environ={})
    assert local.startswith("file:///") and local.endswith("/micro-moments/checkpoints")
    # Submitted by `flink run` (its Python gets the gateway port): the cluster decides.
    assert checkpoint_storage_dir(cfg, environ={"PYFLINK_GATEWAY_PORT": "1"}) is None
    chosen = config("--rules", str(rules), "--checkpoint-dir", str(tmp_path / "c"), environ=kafka)
    expected = (tmp_path / "c").as_uri()
    assert checkpoint_storage_dir(chosen, environ={"PYFLINK_GATEWAY_PORT": "1"}) == expected


def test_file_mode_defaults(files):
    rules, events, tmp = files
    cfg = config("--rules", str(rules), "--events", str(events), "--out", str(tmp / "a.jsonl"))
    assert not cfg.kafka_mode
    assert cfg.max_out_of_orderness_ms == 2_000
    assert cfg.idle_fire_after_ms is None  # off for replays
    assert cfg.crm.backend == "none"


def test_kafka_mode_from_environment(files, listening_port):
    rules, _, tmp = files
    cfg = config(
        "--rules", str(rules), "--checkpoint-interval", "5s", "--max-out-of-orderness", "0",
        environ={"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{listening_port}"},
    )  # fmt: skip
    assert cfg.kafka_mode and cfg.bootstrap_servers == f"127.0.0.1:{listening_port}"
    assert cfg.idle_fire_after_ms == 5_000  # on by default in Kafka mode
    assert cfg.checkpoint_interval_ms == 5_000 and cfg.max_out_of_orderness_ms == 0


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "no input"),
        (["--events", "missing.jsonl", "--out", "a.jsonl"], "no such file"),
        (["--events", "{events}"], "--out is required"),
        (["--events", "{events}", "--out", "a", "--max-out-of-orderness", "2 parsecs"],
         "--max-out-of-orderness"),
        (["--events", "{events}", "--out", "a", "--delivery", "exactly-once"], "needs Kafka"),
        (["--bootstrap-servers", "127.0.0.1:1"], "no Kafka broker reachable"),
        (["--bootstrap-servers", "nonsense"], "expected host:port"),
        (["--events", "{events}", "--out", "a", "--idle-fire-after", "soon"], "--idle-fire-after"),
    ],
)  # fmt: skip
def test_user_mistakes_are_one_line(files, extra, message):
    rules, events, _ = files
    argv = ["--rules", str(rules), *[a.replace("{events}", str(events)) for a in extra]]
    with pytest.raises(ConfigError, match=message):
        config(*argv)


def test_bad_rules_file_names_rule_and_field(files):
    rules, events, tmp = files
    rules.write_text(RULES.replace("10s", "10 parsecs"))
    with pytest.raises(ConfigError, match=r"rule quick_add: pattern.within"):
        config("--rules", str(rules), "--events", str(events), "--out", str(tmp / "a"))


def test_bad_crm_environment_is_a_usage_error(files):
    rules, events, tmp = files
    with pytest.raises(ConfigError, match="CRM"):
        config(
            "--rules", str(rules), "--events", str(events), "--out", str(tmp / "a"),
            environ={"CRM_BACKEND": "http"},
        )  # fmt: skip


def test_cli_prints_usage_errors_in_one_line(files, capsys):
    rules, _, _ = files
    assert main(["run", "--rules", str(rules)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("moments run: no input") and "\n" not in err


def test_exactly_once_sink_is_transactional(files, listening_port):
    rules, _, _ = files
    cfg = config(
        "--rules", str(rules), "--bootstrap-servers", f"127.0.0.1:{listening_port}",
        "--delivery", "exactly-once", "--transactional-id-prefix", "tx",
    )  # fmt: skip
    ddl = kafka_sink_ddl(cfg)
    assert "'sink.delivery-guarantee' = 'exactly-once'" in ddl
    assert "'sink.transactional-id-prefix' = 'tx'" in ddl
    assert "'properties.isolation.level' = 'read_committed'" in kafka_events_table_ddl(cfg)


def test_prefilter_query_names_the_types_rules_read():
    query = keyed_records_query(frozenset({"view", "add"}))
    assert "NOT IN ('add', 'view')" in query
    assert "WHERE" not in keyed_records_query(None)  # a silence rule reads every event


def test_max_future_defaults_to_an_hour_and_reaches_the_jvm_functions(files, listening_port):
    rules, events, tmp = files
    file_args = ("--rules", str(rules), "--events", str(events), "--out", str(tmp / "a"))
    assert config(*file_args).max_future_ms == 3_600_000
    assert config(*file_args, "--max-future", "10m").max_future_ms == 600_000
    assert config(*file_args, "--max-future", "0").max_future_ms == 0
    assert config(*file_args, "--max-future", "off").max_future_ms is None
    with pytest.raises(ConfigError, match="--max-future: bad duration 'soon'"):
        config(*file_args, "--max-future", "soon")
    kafka = config(
        "--rules", str(rules), "--bootstrap-servers", f"127.0.0.1:{listening_port}",
        "--max-future", "off",
    )  # fmt: skip
    assert "moments_event_time(`value`, CAST(-1 AS BIGINT))" in kafka_events_table_ddl(kafka)
    query = keyed_records_query(None, max_future_ms=600_000)
    assert "moments_decode(`value`, CAST(600000 AS BIGINT))" in query


def test_the_prometheus_port_flag_wins_over_the_environment(files):
    rules, events, tmp = files
    file_args = ("--rules", str(rules), "--events", str(events), "--out", str(tmp / "a"))
    port = {"MOMENTS_PROMETHEUS_PORT": "9300"}
    assert config(*file_args).prometheus_port == "9249"
    assert config(*file_args, environ=port).prometheus_port == "9300"
    assert config(*file_args, "--prometheus-port", "9400", environ=port).prometheus_port == "9400"


def test_runtime_flags_are_in_the_model(files):
    rules, events, tmp = files
    file_args = ("--rules", str(rules), "--events", str(events), "--out", str(tmp / "a"))
    cfg = config(*file_args, "--rest-port", "8082", "--from-checkpoint", "file:///c/chk-1")
    assert (cfg.rest_port, cfg.from_checkpoint) == (8082, "file:///c/chk-1")
    assert cfg.jvm_prefilter and not config(*file_args, "--no-jvm-prefilter").jvm_prefilter
    conf = config(*file_args, "--flink-conf", "a=1", "--flink-conf", "b = 2").flink_conf
    assert conf == ("a=1", "b = 2")
    with pytest.raises(ConfigError, match="--flink-conf: 'nonsense': expected KEY=VALUE"):
        config(*file_args, "--flink-conf", "nonsense")


def test_a_file_replay_ignores_the_kafka_variable(files, listening_port):
    rules, events, tmp = files
    kafka = {"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{listening_port}"}
    cfg = config(
        "--rules", str(rules), "--events", str(events), "--out", str(tmp / "a"), environ=kafka
    )
    assert not cfg.kafka_mode


def test_a_file_replay_ignores_the_kafka_variable_of_the_process(files, monkeypatch):
    # The model's own settings source must not read the process environment behind the
    # filtered mapping `from_args` passes down (a shell with KAFKA_BOOTSTRAP_SERVERS set).
    rules, events, tmp = files
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    args = parse("--rules", str(rules), "--events", str(events), "--out", str(tmp / "a"))
    assert not DetectConfig.from_args(args).kafka_mode


def test_rules_topic_makes_rules_optional_and_routes_status_rows(files, listening_port):
    rules, events, tmp = files
    kafka = {"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{listening_port}"}
    cfg = config("--rules-topic", "moments.rules", environ=kafka)
    assert cfg.rules == [] and cfg.rules_status_topic == "moments.rules.status"
    assert "moments.rules.status" in kafka_sink_ddl(cfg)
    with_file = config("--rules", str(rules), "--rules-topic", "r", environ=kafka)
    assert [rule.id for rule in with_file.rules] == ["quick_add"]  # the initial version
    with pytest.raises(ConfigError, match="--rules is required"):
        config(environ=kafka)
    with pytest.raises(ConfigError, match="--rules-topic needs Kafka"):
        config("--rules-topic", "r", "--events", str(events), "--out", str(tmp / "a.jsonl"))


def test_rules_scope_needs_the_rules_topic_and_bounds_the_initial_rules(files, listening_port):
    rules, _events, tmp = files
    kafka = {"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{listening_port}"}
    scope = tmp / "scope.yaml"
    scope.write_text(rules.read_text())
    cfg = config(
        "--rules", str(rules), "--rules-topic", "r", "--rules-scope", str(scope), environ=kafka
    )
    assert [rule.id for rule in cfg.rules_scope] == ["quick_add"]
    with pytest.raises(ConfigError, match="--rules-scope goes with --rules-topic"):
        config("--rules", str(rules), "--rules-scope", str(scope), environ=kafka)
    narrow = tmp / "narrow.yaml"
    narrow.write_text(
        "rules:\n  - id: c\n    pattern: {type: count, match: {event_type: login_failed}, "
        "threshold: 2, within: 1m}\n    action: {name: n, destinations: [kafka]}\n"
    )
    with pytest.raises(
        ConfigError, match="rule quick_add: pattern: reads add, view, which the scope drops"
    ):
        config(
            "--rules", str(rules), "--rules-topic", "r", "--rules-scope", str(narrow), environ=kafka
        )
