"""The Flink environment `moments run` builds its job in: configuration from the options, the jars
and Python packages the job ships (so the same code runs locally and under `flink run`), the
workers' interpreter, checkpoint storage and metric reporters.
"""

from __future__ import annotations

import glob
import os
import sys
from pathlib import Path

from jobs import flink_compat
from jobs.cli import UsageError
from jobs.detection.config import DetectConfig

ROOT = Path(__file__).resolve().parents[2]
JARS_DIR = ROOT / ".cache" / "jars" / "flink"
UDF_JAR = ROOT / ".cache" / "jars" / "udfs" / "micro-moments-udfs.jar"
PACKAGES = ("jobs", "udfs", "schemas")
PROMETHEUS_FACTORY = "org.apache.flink.metrics.prometheus.PrometheusReporterFactory"
REPORTER_FACTORIES = {
    "prometheus": PROMETHEUS_FACTORY,
    "jmx": "org.apache.flink.metrics.jmx.JMXReporterFactory",
    "slf4j": "org.apache.flink.metrics.slf4j.Slf4jReporterFactory",
}


def create_environment(config: DetectConfig):
    """The stream and (Kafka mode) table environments, configured, with jars and packages."""
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import StreamTableEnvironment

    venv_first_on_path()
    env = StreamExecutionEnvironment.get_execution_environment(flink_configuration(config))
    if config.parallelism:
        env.set_parallelism(config.parallelism)
    add_to_environment(env, job_jars(config), [_staged_packages()], config.python_executable)
    t_env = None
    if config.kafka_mode:
        from jobs.connectors.kafka_source import register_decode_function

        t_env = StreamTableEnvironment.create(env)
        register_decode_function(t_env)
    return env, t_env


def flink_configuration(config: DetectConfig):
    """The job's Flink configuration from the options: runtime, latency and checkpoint settings
    (each --flink-conf overrides them), then the metric reporter."""
    from pyflink.common import Configuration

    conf = Configuration()
    conf.set_string("python.execution-mode", config.execution_mode)
    # Many users per subtask: the default of 1000 cached keys thrashes.
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
    if config.from_checkpoint:
        conf.set_string("execution.state-recovery.path", config.from_checkpoint)
    if config.rest_port:
        conf.set_string("rest.port", str(config.rest_port))
    for option in config.flink_conf:
        key, _, value = option.partition("=")
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
            raise UsageError(
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

    if jars:
        flink_compat.add_jars_to_client(jars)
    j_conf = flink_compat.environment_configuration(env)
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
    import tempfile

    if config.checkpoint_dir:
        return config.checkpoint_dir
    environ = os.environ if environ is None else environ
    if environ.get("PYFLINK_GATEWAY_PORT"):
        return None
    return (Path(tempfile.gettempdir()) / "micro-moments" / "checkpoints").as_uri()


def _flink_home() -> Path:
    import pyflink

    return Path(os.environ.get("FLINK_HOME") or Path(pyflink.__file__).parent)


def _on_flink_classpath(jar_name: str) -> bool:
    """True when Flink's lib/ holds the jar (the image puts the project's UDF jar there)."""
    return (_flink_home() / "lib" / jar_name).exists()


def _warn_if_reporter_missing(reporter: str) -> None:
    """PyFlink's wheel ships no metric reporter jars (checked: 2.2.1 has none in lib/ or opt/);
    Flink starts without a reporter it cannot load, so say so up front."""
    flink_home = _flink_home()
    plugins = Path(os.environ.get("FLINK_PLUGINS_DIR") or flink_home / "plugins")
    candidates = [*flink_home.glob("lib/*.jar"), *plugins.glob("*/*.jar")]
    if not any(f"flink-metrics-{reporter}" in jar.name for jar in candidates):
        print(
            f"moments run: warning: no flink-metrics-{reporter} jar in {flink_home}/lib or "
            f"{plugins}/*/: the {reporter} reporter will not start (see deploy/README.md)",
            file=sys.stderr,
        )


def venv_first_on_path(environ=None) -> None:
    """Put this interpreter's directory first on PATH before the local JVM starts.

    In thread mode the JVM embeds CPython (PEMJA), which finds its prefix by looking up `python`
    on PATH: with a venv's `bin` missing there (`.venv/bin/moments` started from a plain shell),
    it finds the base interpreter, without the venv's site-packages, and every Python operator
    fails with "No module named 'pemja'". The MiniCluster JVM inherits this environment."""
    environ = os.environ if environ is None else environ
    bin_dir = str(Path(sys.executable).parent)
    path = environ.get("PATH", "")
    if path.split(os.pathsep)[0] != bin_dir:
        environ["PATH"] = bin_dir + (os.pathsep + path if path else "")
