"""`moments run`: the PyFlink detection job.

    Kafka: events -> [JVM: moments_decode, drop unread types, key by user_id]
      -> rule engine (decodes what the JVM could not vouch for: bad -> DLQ; late -> late events)
      -> actions (keyed by user_id)
    file:  lines -> decode (bad -> DLQ) -> key_by(user_id) -> rule engine -> actions file

`build_pipeline` is the whole topology for both modes; `run` picks the source and sink. The same
module runs on a session cluster as `flink run -py jobs/detect.py --rules ...`: it ships its own
packages and jars (`add_to_environment`; the UDF jar of udfs/jvm must be built or in the cluster's
lib/: deploy/README.md).

How watermarks are made:
- Kafka mode: at the source, per Kafka partition. The events table (jobs/sources.py) has a rowtime
  `rt` = the record's `ts` as `moments_event_time` (udfs/jvm) reads it (integer epoch ms or RFC
  3339 with a zone) when the record is valid within the guard rails, else 0 (invalid and
  poisoned records: below every valid ts, so they never move a watermark; a NULL rowtime would
  fail the job), and `WATERMARK FOR rt AS rt - bound`: Flink SQL emits exactly max_ts - bound
  (tested at the boundary). The planner pushes it into the Kafka source, which tracks one
  watermark per partition (split) and emits their minimum, so one reader interleaving the
  partitions of a backlog in fetch-sized chunks makes nothing late; a partition without records for
  --source-idle-timeout (`table.exec.source.idle-timeout`) stops holding it back. The watermark
  passes the SQL query, to_data_stream and the JVM keyBy unchanged; no DataStream assigner.
- File mode: one reader, in file order, by `for_bounded_out_of_orderness(bound - 1 ms)` after
  decode (Flink emits max_ts - (bound - 1) - 1 = max_ts - bound; bound 0: max_ts - 1).

Choices the design left open (details in udfs/host.py and jobs/prefilter.py):
- Lateness, file mode: decided at decode in file order by the backtest's rule (ts < max_ts_seen -
  bound), so a file run equals `moments backtest` on any input, late events included. Kafka mode:
  ts below the operator's watermark (max_ts - bound, the minimum over partitions).
- detected_at: event time of detection (the timer's time, >= trigger_ts) in file mode, wall-clock
  ms in Kafka mode.
- Liveness: processing-time timers force a user's event time to its pending deadline once the
  subtask's input is idle, i.e. for idle_fire_after no element arrived and the watermark did not
  move (a watermark standing still under backlog is not idleness), and wall-clock is past the
  deadline by as much; later events of that user below it are late.
- Enrichment: async by default. Measured (local PostgreSQL, cached): healthy CRM, 60k events /
  3433 actions: no CRM 49.4 s, sync 49.4 s, async 53.7 s (a process-mode worker to start); CRM
  that never answers (200 ms timeout), 15k events / 978 actions: no CRM 21.5 s, sync 149.5 s
  (detection stalls behind each lookup), async 48.6 s. The enrich.* metrics below are emitted
  by the sync layout; the async operator's (process mode) did not show up in the REST API.
- Metrics (operator scope): detect.events_in, detect.invalid (Kafka mode: decoding runs in the
  detect operator; file mode: decode.events_in, decode.invalid), detect.processed, detect.late,
  detect.idle_forced_advances, detect.rule.<id>.actions, enrich.{ok,missing,unavailable},
  enrich.cache_hits, enrich.crm_latency_ms (gauge), enrich.crm_latency_ms_total, and with a
  silence rule activity.skipped and activity.held (the JVM activity filter, udfs/jvm). With the
  JVM prefilter, records the SQL query drops are counted only by the source (numRecordsOut):
  events in = dropped + activity.skipped + activity.held + detect.events_in. The PyFlink wheel
  ships no reporter jar: for `--metrics-reporter prometheus` put
  org.apache.flink:flink-metrics-prometheus:2.2.1 in $FLINK_PLUGINS_DIR/metrics-prometheus/ (or
  Flink's lib/).
"""

from __future__ import annotations

import glob
import sys
from pathlib import Path

from jobs import settings
from jobs.cli import UsageError
from jobs.config import ConfigError, DetectConfig

ROOT = Path(__file__).resolve().parents[1]
JARS_DIR = ROOT / ".cache" / "jars" / "flink"
UDF_JAR = ROOT / ".cache" / "jars" / "udfs" / "micro-moments-udfs.jar"
PACKAGES = ("jobs", "udfs", "schemas")
PROMETHEUS_FACTORY = "org.apache.flink.metrics.prometheus.PrometheusReporterFactory"
REPORTER_FACTORIES = {
    "prometheus": PROMETHEUS_FACTORY,
    "jmx": "org.apache.flink.metrics.jmx.JMXReporterFactory",
    "slf4j": "org.apache.flink.metrics.slf4j.Slf4jReporterFactory",
}


def configure_parser(parser) -> None:
    parser.add_argument("--rules", required=True, metavar="RULES.yaml", help="the rules file")
    files = parser.add_argument_group("file mode (no Kafka)")
    files.add_argument("--events", metavar="EVENTS.jsonl", help="read events from this file")
    files.add_argument("--out", metavar="ACTIONS.jsonl", help="write actions here")
    files.add_argument("--late-out", metavar="LATE.jsonl", help="write late events here")
    files.add_argument("--dlq-out", metavar="DLQ.jsonl", help="write invalid records here")
    kafka = parser.add_argument_group("Kafka mode")
    kafka.add_argument(
        "--bootstrap-servers",
        help=f"Kafka bootstrap servers (default: ${settings.ENV_KAFKA_BOOTSTRAP} when no --events)",
    )
    kafka.add_argument("--events-topic", default=settings.EVENTS_TOPIC)
    kafka.add_argument("--actions-topic", default=settings.ACTIONS_TOPIC)
    kafka.add_argument("--dlq-topic", default=settings.EVENTS_DLQ_TOPIC)
    kafka.add_argument("--late-topic", default=settings.LATE_EVENTS_TOPIC)
    kafka.add_argument("--group-id", default="moments-detect", help="consumer group of the job")
    kafka.add_argument(
        "--starting-offsets",
        choices=["earliest", "latest", "committed"],
        default="committed",
        help="where to start reading: the group's committed offsets (earliest if none), "
        "the earliest or the latest offsets",
    )
    kafka.add_argument(
        "--delivery",
        choices=["at-least-once", "exactly-once"],
        default="at-least-once",
        help="actions sink guarantee; exactly-once makes actions visible to read_committed "
        "consumers at each checkpoint",
    )
    kafka.add_argument("--transactional-id-prefix", default="moments-detect")
    kafka.add_argument("--checkpoint-interval", default="10s", help="0 disables checkpoints")
    kafka.add_argument("--checkpoint-dir", help="checkpoint storage (path or URI)")
    kafka.add_argument(
        "--from-checkpoint", metavar="PATH", help="restore from this checkpoint or savepoint"
    )
    timing = parser.add_argument_group("event time")
    timing.add_argument(
        "--max-out-of-orderness", default="2s", help="watermark bound (default 2s; 0 allowed)"
    )
    timing.add_argument(
        "--max-future",
        default="1h",
        help="guard rail: an event whose ts is more than this after wall-clock now is "
        "dead-lettered (default 1h; 'off' for synthetic data in the future)",
    )
    timing.add_argument(
        "--idle-fire-after",
        help="fire pending deadlines after this much wall-clock idleness "
        "(default 5s in Kafka mode, off in file mode; 'off' disables)",
    )
    timing.add_argument(
        "--source-idle-timeout",
        default="10s",
        help="a Kafka partition without records for this long stops holding the watermark back "
        "(default 10s: shorter lets a partition starved by backpressure while a backlog is read "
        "be marked idle, and its later events come out late)",
    )
    timing.add_argument("--state-ttl", default="7d", help="safety-net TTL of per-user state")
    runtime = parser.add_argument_group("runtime")
    runtime.add_argument("--parallelism", type=int)
    runtime.add_argument(
        "--execution-mode",
        choices=["process", "thread"],
        default="thread",
        help="PyFlink Python execution mode (thread: in the JVM via PEMJA, faster)",
    )
    runtime.add_argument(
        "--no-jvm-prefilter",
        action="store_true",
        help="every record to Python (default: the JVM skips events no rule reads, and with a "
        "silence rule the activity the engine would not keep)",
    )
    runtime.add_argument(
        "--enrichment-layout",
        choices=["inline", "sync", "async"],
        default="async",
        help="CRM lookups (configured by CRM_* variables): PyFlink AsyncDataStream in a "
        "process-mode operator (default: a slow CRM does not stall detection), or cached "
        "synchronous lookups in the thread-mode job (no extra worker, but blocks on a slow CRM)",
    )
    runtime.add_argument(
        "--metrics-reporter",
        choices=["none", "prometheus", "jmx", "slf4j"],
        default="none",
        help="Flink metric reporter (its jar must be on Flink's classpath: see README)",
    )
    runtime.add_argument("--prometheus-port", default="9249", help="port or range, e.g. 9249-9260")
    runtime.add_argument(
        "--jar",
        action="append",
        help="extra jar for the job (the Kafka connector is found in .cache/jars/flink)",
    )
    runtime.add_argument("--rest-port", type=int, help="local MiniCluster web/REST port")
    runtime.add_argument(
        "--flink-conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other Flink configuration option (repeatable)",
    )


def flink_configuration(config: DetectConfig, args=None):
    from pyflink.common import Configuration

    conf = Configuration()
    conf.set_string("python.execution-mode", config.execution_mode)
    # Many users per subtask: the default of 1000 cached keys thrashes (PYFLINK_FACTS.md).
    conf.set_string("python.state.cache-size", "100000")
    conf.set_string("python.fn-execution.bundle.time", "100")
    # Latency: an action waits for the watermark to pass its event, and the watermark is emitted
    # every auto-watermark-interval; network buffers wait up to buffer-timeout when not full.
    # 50 ms / 20 ms instead of Flink's 200 ms / 100 ms (--flink-conf overrides both).
    conf.set_string("pipeline.auto-watermark-interval", "50 ms")
    conf.set_string("execution.buffer-timeout", "20 ms")
    if config.kafka_mode and config.checkpoint_interval_ms:
        conf.set_string("execution.checkpointing.interval", f"{config.checkpoint_interval_ms} ms")
        conf.set_string("execution.checkpointing.mode", "EXACTLY_ONCE")
        conf.set_string(
            "execution.checkpointing.externalized-checkpoint-retention", "RETAIN_ON_CANCELLATION"
        )
        checkpoint_dir = checkpoint_storage_dir(config)
        if checkpoint_dir:
            conf.set_string("execution.checkpointing.dir", checkpoint_dir)
            conf.set_string("execution.checkpointing.storage", "filesystem")
    if args is not None and getattr(args, "from_checkpoint", None):
        conf.set_string("execution.state-recovery.path", args.from_checkpoint)
    if args is not None and getattr(args, "rest_port", None):
        conf.set_string("rest.port", str(args.rest_port))
    for option in getattr(args, "flink_conf", None) or []:
        key, sep, value = option.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--flink-conf {option!r}: expected KEY=VALUE")
        conf.set_string(key.strip(), value.strip())
    if config.metrics_reporter != "none":
        _warn_if_reporter_missing(config.metrics_reporter)
        factory = REPORTER_FACTORIES[config.metrics_reporter]
        name = "prom" if config.metrics_reporter == "prometheus" else config.metrics_reporter
        conf.set_string(f"metrics.reporter.{name}.factory.class", factory)
        if config.metrics_reporter == "prometheus":
            conf.set_string(f"metrics.reporter.{name}.port", config.prometheus_port)
    return conf


def job_jars(config: DetectConfig) -> list[str]:
    """URIs of the jars the job ships in pipeline.jars: --jar, and in Kafka mode the connector
    (from .cache/jars unless --jar names one) and the project's UDF jar (udfs/jvm)."""
    jars = [str(j) for j in config.jars]
    if config.kafka_mode and not any("kafka" in Path(j).name for j in jars):
        jars += sorted(glob.glob(str(JARS_DIR / "flink-sql-connector-kafka-*.jar")))
    if config.kafka_mode and not any(Path(j).name == UDF_JAR.name for j in jars):
        if UDF_JAR.exists():
            jars.append(str(UDF_JAR))
        elif not _on_flink_classpath(UDF_JAR.name):
            raise ConfigError(
                f"{UDF_JAR} is missing (the JVM decoder, udfs/jvm): run `make setup`, "
                "pass the jar with --jar, or put it in Flink's lib/"
            )
    return [Path(j).resolve().as_uri() for j in jars]


def add_to_environment(
    env, jars: list[str], packages: list[Path], python_executable: str = sys.executable
) -> None:
    """Add the job's jars, Python packages and interpreter to what the environment already has.

    Under `flink run` the environment starts with the client's settings: pipeline.jars holds
    the flink-python jar (without it the cluster cannot load the Python operators:
    ClassNotFoundException EmbeddedPythonKeyedProcessOperator) and any `-j` jar, python.files
    the `-pyfs` entries. Setting pipeline.jars in the job's Configuration replaced that list, so
    jars are appended here instead, skipping a file name already there (`-j` names the same
    connector). Python files are zipped under their base name, so one whose name `-pyfs`
    already ships is not added (two `udfs.zip`: FileAlreadyExistsException at submission).
    """
    from pyflink.common import Configuration
    from pyflink.java_gateway import get_gateway
    from pyflink.util.java_utils import add_jars_to_context_class_loader

    # The planner finds the connector's table factory and the UDFs through the client's
    # context class loader, which pipeline.jars does not reach.
    if jars:
        add_jars_to_context_class_loader(jars)
    j_conf = get_gateway().jvm.org.apache.flink.python.util.PythonConfigUtil.getEnvironmentConfig(
        env._j_stream_execution_environment
    )
    configured = Configuration.parse_list_value(j_conf.getString("pipeline.jars", None))
    names = {uri.rstrip("/").rsplit("/", 1)[-1] for uri in configured}
    added = [uri for uri in jars if uri.rsplit("/", 1)[-1] not in names]
    if added:
        j_conf.setString("pipeline.jars", str([*configured, *added]))
    python_worker_options(j_conf, python_executable)
    python_files = j_conf.getString("python.files", None) or ""
    shipped = {Path(entry.split("#")[0]).name for entry in python_files.split(",") if entry}
    for package in packages:
        if package.name not in shipped:
            env.add_python_file(str(package))


def _staged_packages() -> Path:
    """A temporary directory holding copies of the project's packages (jobs, udfs, schemas),
    to ship in python.files. Flink puts a shipped directory itself on the workers' PYTHONPATH,
    not its parent: shipping `jobs/` would make `operators` importable, not `jobs.operators`."""
    import atexit
    import shutil
    import tempfile

    staging = Path(tempfile.mkdtemp(prefix="micro-moments-")) / "micro_moments_packages"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "jvm")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, staging / package, ignore=ignore)
    atexit.register(shutil.rmtree, staging.parent, True)
    return staging


def python_worker_options(j_conf, python_executable: str) -> None:
    """The Python the workers run, unless the cluster or `flink run -pyexec` chose one, and
    the site-packages beside it.

    Thread mode embeds CPython in the TaskManager (PEMJA), which is given python.executable only
    to locate libpython: the interpreter finds its prefix by looking up `python` on the
    TaskManager's PATH, so a venv not first there is not its prefix and every Python operator
    fails with "No module named 'pemja'". python.pythonpath (added to the embedded interpreter's
    sys.path) names the venv's site-packages instead. It assumes the workers' venv has the
    client's Python version; an interpreter from an archive (`-pyarch`) gets its home set by
    Flink and needs nothing."""
    for key in ("python.executable", "python.client.executable"):
        if not j_conf.getString(key, None):
            j_conf.setString(key, python_executable)
    executable = Path(j_conf.getString("python.executable", None))
    if executable.is_absolute() and not j_conf.getString("python.pythonpath", None):
        version = f"python{sys.version_info.major}.{sys.version_info.minor}"
        site_packages = executable.parent.parent / "lib" / version / "site-packages"
        j_conf.setString("python.pythonpath", str(site_packages))


def checkpoint_storage_dir(config: DetectConfig, environ=None) -> str | None:
    """Where checkpoints go: --checkpoint-dir; else, for a local run, a directory under the
    system's temp dir. Flink's own default keeps checkpoints in the JobManager's memory, capped
    at 5 MB per subtask: a local run with many users outgrew it (measured: 8.9 MB of state for
    100k users), the checkpoint failed, and the job restarted from the last good one over and
    over. A job the Flink CLI submits (`flink run`, which sets PYFLINK_GATEWAY_PORT for its
    Python) keeps the cluster's configured storage."""
    import os
    import tempfile

    if config.checkpoint_dir:
        return config.checkpoint_dir
    environ = os.environ if environ is None else environ
    if environ.get("PYFLINK_GATEWAY_PORT"):
        return None
    return (Path(tempfile.gettempdir()) / "micro-moments" / "checkpoints").as_uri()


def _flink_home() -> Path:
    import os

    import pyflink

    return Path(os.environ.get("FLINK_HOME") or Path(pyflink.__file__).parent)


def _on_flink_classpath(jar_name: str) -> bool:
    """True when Flink's lib/ holds the jar (the image puts the project's UDF jar there)."""
    return (_flink_home() / "lib" / jar_name).exists()


def _warn_if_reporter_missing(reporter: str) -> None:
    """PyFlink's wheel ships no metric reporter jars (checked: 2.2.1 has none in lib/ or opt/);
    Flink starts without a reporter it cannot load, so say so up front."""
    import os

    flink_home = _flink_home()
    plugins = Path(os.environ.get("FLINK_PLUGINS_DIR") or flink_home / "plugins")
    candidates = [*flink_home.glob("lib/*.jar"), *plugins.glob("*/*.jar")]
    if not any(f"flink-metrics-{reporter}" in jar.name for jar in candidates):
        print(
            f"moments run: warning: no flink-metrics-{reporter} jar in {flink_home}/lib or "
            f"{plugins}/*/: the {reporter} reporter will not start (see jobs/detect.py)",
            file=sys.stderr,
        )


def build_pipeline(env, t_env, config: DetectConfig):
    """The topology, source to output rows; returns the union of actions, late and DLQ rows."""
    from pyflink.common import Duration, Types, WatermarkStrategy

    from jobs import sources
    from jobs.operators import (
        DLQ_TAG,
        LATE_TAG,
        OUTPUT_ROW,
        DecodeEvents,
        DetectMoments,
        EventTimeOf,
    )

    file_mode = not config.kafka_mode
    enrich = config.crm.backend != "none"
    inline = enrich and config.enrichment_layout == "inline"
    if inline:
        from jobs.enrich_inline import EnrichingDetectMoments

        detector_class, extra = EnrichingDetectMoments, {"crm_settings": config.crm}
        extra["block"] = file_mode
    else:
        detector_class, extra = DetectMoments, {"emit_json": not enrich}
    detector = detector_class(
        config.rules,
        state_ttl_ms=config.state_ttl_ms,
        idle_fire_after_ms=config.idle_fire_after_ms,
        event_time_detected_at=file_mode,
        decode_rows=not file_mode,
        max_future_ms=config.max_future_ms,
        **extra,
    )
    output_type = Types.PICKLED_BYTE_ARRAY() if enrich and not inline else OUTPUT_ROW
    if file_mode:
        raw = sources.file_lines(env, config)
        decoder = DecodeEvents(
            source=str(config.events_path),
            replay_lateness_ms=config.max_out_of_orderness_ms,
            max_future_ms=config.max_future_ms,
        )
        decoded = (
            raw.process(decoder, output_type=Types.PICKLED_BYTE_ARRAY())
            .name("decode")
            .uid("decode")
            .set_parallelism(1)
        )
        # Flink emits max_ts - d - 1; the engine's (and backtest's) watermark is max_ts - bound.
        bound = config.max_out_of_orderness_ms
        watermarks = (
            WatermarkStrategy.for_bounded_out_of_orderness(Duration.of_millis(bound - 1))
            if bound > 0
            else WatermarkStrategy.for_monotonous_timestamps()
        ).with_timestamp_assigner(EventTimeOf())
        timed = (
            decoded.assign_timestamps_and_watermarks(watermarks)
            .name("event-time")
            .uid("event-time")
            .set_parallelism(1)
        )
        keyed = timed.key_by(lambda record: record[0], key_type=Types.STRING())
        side_outputs = [decoded.get_side_output(DLQ_TAG), decoded.get_side_output(LATE_TAG)]
    else:
        # Decoded (when certainly valid) and keyed in the JVM; the Kafka source made the
        # watermarks, per partition (jobs.sources). Records Flink SQL cannot vouch for are
        # decoded by the detect operator itself, which dead-letters the invalid ones.
        keyed = sources.kafka_keyed_records(t_env, config)
        side_outputs = []
    detected = keyed.process(detector, output_type=output_type).name("detect").uid("detect")
    if not file_mode:
        side_outputs.append(detected.get_side_output(DLQ_TAG))
    side_outputs.append(detected.get_side_output(LATE_TAG))
    actions = enrich_actions(env, detected, config) if enrich and not inline else detected
    return actions.union(*side_outputs)


def enrich_actions(env, actions, config: DetectConfig):
    """Actions -> output rows with the CRM profile, in the configured layout."""
    from pyflink.common import Time

    from jobs.operators import OUTPUT_ROW, EnrichActions, async_enrich_function

    if config.enrichment_layout == "sync":
        return (
            actions.process(EnrichActions(config.crm), output_type=OUTPUT_ROW)
            .name("enrich")
            .uid("enrich")
        )
    from pyflink.datastream import AsyncDataStream
    from pyflink.util.java_utils import get_j_env_configuration

    # PyFlink picks each Python operator's runtime (thread or process) when it is added, from
    # the environment's configuration, and refuses an AsyncFunction in thread mode: so the
    # operators before this one stay in thread mode and this one alone runs in process mode.
    j_conf = get_j_env_configuration(env._j_stream_execution_environment)
    j_conf.setString("python.execution-mode", "process")
    # The Flink-side timeout backs up the CRM client's own (which answers `unavailable` first).
    timeout = Time.milliseconds(config.crm.timeout_ms * (config.crm.retries + 1) + 1_000)
    enriched = (
        AsyncDataStream.unordered_wait(
            actions,
            async_enrich_function(config.crm),
            timeout,
            capacity=256,
            output_type=OUTPUT_ROW,
        )
        .name("enrich")
        .uid("enrich")
    )
    j_conf.setString("python.execution-mode", config.execution_mode)
    return enriched


def _venv_first_on_path(environ=None) -> None:
    """Put this interpreter's directory first on PATH before the local JVM starts.

    In thread mode the JVM embeds CPython (PEMJA), which finds its prefix by looking up `python`
    on PATH: with a venv's `bin` missing there (`.venv/bin/moments` started from a plain shell),
    it finds the base interpreter, without the venv's site-packages, and every Python operator
    fails with "No module named 'pemja'". The MiniCluster JVM inherits this environment."""
    import os

    environ = os.environ if environ is None else environ
    bin_dir = str(Path(sys.executable).parent)
    path = environ.get("PATH", "")
    if path.split(os.pathsep)[0] != bin_dir:
        environ["PATH"] = bin_dir + (os.pathsep + path if path else "")


def _environment(config: DetectConfig, args):
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import StreamTableEnvironment

    _venv_first_on_path()
    conf = flink_configuration(config, args)
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    if config.parallelism:
        env.set_parallelism(config.parallelism)
    add_to_environment(env, job_jars(config), [_staged_packages()], config.python_executable)
    t_env = None
    if config.kafka_mode:
        from jobs.sources import register_decode_function

        t_env = StreamTableEnvironment.create(env)
        register_decode_function(t_env)
    return env, t_env


def run_file_mode(config: DetectConfig, args) -> dict[str, int]:
    from jobs.sinks import FileOutputs

    env, t_env = _environment(config, args)
    rows = build_pipeline(env, t_env, config)
    outputs = FileOutputs(config)
    with rows.execute_and_collect("moments-detect (file)") as results:
        counts = outputs.write_all(results)
    events_in = _count_records(config.events_path)
    summary = {
        "events_in": events_in,
        "processed": events_in - counts["late"] - counts["dlq"],
        "late": counts["late"],
        "dead_lettered": counts["dlq"],
        "actions": counts["action"],
    }
    return summary


def run_kafka_mode(config: DetectConfig, args) -> None:
    from jobs.sinks import add_kafka_sink

    env, t_env = _environment(config, args)
    rows = build_pipeline(env, t_env, config)
    statements = add_kafka_sink(t_env, rows, config)
    statements.attach_as_datastream()
    env.execute("moments-detect (kafka)")


def _count_records(path: Path) -> int:
    with open(path, "rb") as lines:
        return sum(1 for line in lines if line.strip())


def run(args) -> int:
    try:
        config = DetectConfig.from_args(args)
        if config.kafka_mode:
            run_kafka_mode(config, args)
            return 0
        summary = run_file_mode(config, args)
    except ConfigError as error:
        raise UsageError(str(error)) from None
    print(
        "moments run: {events_in} events in, {processed} processed, {late} late, "
        "{dead_lettered} dead-lettered; {actions} actions".format(**summary),
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    from jobs.cli import main

    sys.exit(main(["run", *sys.argv[1:]]))
