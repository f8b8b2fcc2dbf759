"""Everything `moments run` reads from flags and environment, declared once on `DetectConfig` (jobs/
options.py generates the parser and `--help` from it) and validated before any JVM starts, so a
user mistake is one line (`moments run: ...`, exit 2), not a stack trace.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, WrapValidator, field_validator, model_validator

from jobs import settings
from jobs.detection import checks
from jobs.options import Millis, MillisOrOff, Options, OptionsError, load, option
from schemas.rules import Rule, RuleSet
from udfs.crm import CrmConfigError, CrmSettings, from_env
from udfs.crm.factory import with_profiles_file
from udfs.decode import DEFAULT_MAX_FUTURE_MS

ENV_PROMETHEUS_PORT = "MOMENTS_PROMETHEUS_PORT"
DEFAULT_IDLE_FIRE_AFTER_MS = 5_000

FILES = "file mode (no Kafka)"
KAFKA = "Kafka mode"
TIMING = "event time"
RUNTIME = "runtime"


class DetectConfig(Options):
    """The detection job's options; `from_args` builds it, and it is passed down to the job."""

    rules: Annotated[list[Rule], WrapValidator(checks.rules_file)] = option(
        None, "the rules file (required without --rules-topic)", metavar="RULES.yaml", repr=False
    )
    events_path: Path | None = option(
        None, "read events from this file", flag="--events", metavar="EVENTS.jsonl", group=FILES
    )
    out_path: Path | None = option(
        None, "write actions here", flag="--out", metavar="ACTIONS.jsonl", group=FILES
    )
    late_out_path: Path | None = option(
        None, "write late events here", flag="--late-out", metavar="LATE.jsonl", group=FILES
    )
    dlq_out_path: Path | None = option(
        None, "write invalid records here", flag="--dlq-out", metavar="DLQ.jsonl", group=FILES
    )
    suppressed_out_path: Path | None = option(
        None,
        "write actions the campaign layer suppressed here, with the reason",
        flag="--suppressed-out",
        metavar="S.jsonl",
        group=FILES,
    )
    outcomes_out_path: Path | None = option(
        None, "write outcomes here", flag="--outcomes-out", metavar="O.jsonl", group=FILES
    )
    bootstrap_servers: str | None = option(
        None,
        f"Kafka bootstrap servers (default: ${settings.ENV_KAFKA_BOOTSTRAP} when no --events)",
        env=settings.ENV_KAFKA_BOOTSTRAP,
        group=KAFKA,
    )
    events_topic: str = option(settings.EVENTS_TOPIC, "the events topic", group=KAFKA)
    actions_topic: str = option(settings.ACTIONS_TOPIC, "the actions topic", group=KAFKA)
    dlq_topic: str = option(settings.EVENTS_DLQ_TOPIC, "the dead-letter topic", group=KAFKA)
    late_topic: str = option(settings.LATE_EVENTS_TOPIC, "the late-events topic", group=KAFKA)
    suppressed_topic: str = option(
        settings.SUPPRESSED_TOPIC, "actions the campaign layer suppressed", group=KAFKA
    )
    outcomes_topic: str = option(settings.OUTCOMES_TOPIC, "the outcomes topic", group=KAFKA)
    rules_topic: str | None = option(
        None,
        "live rules: versions from this compacted topic (moments rules publish), each from its "
        "effective_from; without --rules the first is the initial one; JVM filters off "
        "unless --rules-scope",
        metavar="TOPIC",
        group=KAFKA,
    )
    rules_scope: Annotated[list[Rule] | None, WrapValidator(checks.rules_file)] = option(
        None,
        "with --rules-topic: a rules file naming every event type and silence the versions may "
        "use; the JVM filters are built from it and a version reading beyond it is rejected",
        metavar="SCOPE.yaml",
        group=KAFKA,
        repr=False,
    )
    rules_status_topic: str = option(
        settings.RULES_STATUS_TOPIC, "with --rules-topic: versions applied or rejected", group=KAFKA
    )
    group_id: str = option("moments-detect", "consumer group of the job", group=KAFKA)
    starting_offsets: Literal["earliest", "latest", "committed"] = option(
        "committed",
        "where to start reading: the group's committed offsets (earliest if none), "
        "the earliest or the latest offsets",
        group=KAFKA,
    )
    delivery: Literal["at-least-once", "exactly-once"] = option(
        "at-least-once",
        "actions sink guarantee; exactly-once makes actions visible to read_committed "
        "consumers at each checkpoint",
        group=KAFKA,
    )
    transactional_id_prefix: str = option(
        "moments-detect", "prefix of the exactly-once sink's transactional ids", group=KAFKA
    )
    checkpoint_interval_ms: Millis = option(
        10_000,
        "0 disables checkpoints",
        flag="--checkpoint-interval",
        metavar="DURATION",
        group=KAFKA,
        ge=0,
    )
    checkpoint_dir: str | None = option(None, "checkpoint storage (path or URI)", group=KAFKA)
    from_checkpoint: str | None = option(
        None, "restore from this checkpoint or savepoint", metavar="PATH", group=KAFKA
    )
    max_out_of_orderness_ms: Millis = option(
        2_000,
        "watermark bound (default 2s; 0 allowed)",
        flag="--max-out-of-orderness",
        metavar="DURATION",
        group=TIMING,
        ge=0,
    )
    max_future_ms: MillisOrOff = option(
        DEFAULT_MAX_FUTURE_MS,
        "guard rail: an event whose ts is more than this after wall-clock now is "
        "dead-lettered (default 1h; 'off' for synthetic data in the future)",
        flag="--max-future",
        metavar="DURATION",
        group=TIMING,
        ge=0,
    )
    idle_fire_after_ms: Annotated[int | None, BeforeValidator(checks.idle)] = option(
        None,
        "fire pending deadlines after this much wall-clock idleness "
        "(default 5s in Kafka mode, off in file mode; 'off' disables)",
        flag="--idle-fire-after",
        metavar="DURATION",
        group=TIMING,
        ge=1,
    )
    source_idle_timeout_ms: Millis = option(
        10_000,
        "a Kafka partition without records for this long stops holding the watermark back "
        "(default 10s: shorter lets a partition starved by backpressure while a backlog is read "
        "be marked idle, and its later events come out late)",
        flag="--source-idle-timeout",
        metavar="DURATION",
        group=TIMING,
        ge=1,
    )
    state_ttl_ms: Millis = option(
        7 * 86_400_000,
        "safety-net TTL of per-user state",
        flag="--state-ttl",
        metavar="DURATION",
        group=TIMING,
        ge=1,
    )
    parallelism: int | None = option(None, "job parallelism", metavar="N", group=RUNTIME, ge=1)
    execution_mode: Literal["process", "thread"] = option(
        "thread",
        "PyFlink Python execution mode (thread: in the JVM via PEMJA, faster)",
        group=RUNTIME,
    )
    jvm_prefilter: bool = option(
        True,
        "every record to Python (default: the JVM skips events no rule reads, and with a "
        "silence rule the activity the engine would not keep)",
        flag="--no-jvm-prefilter",
        group=RUNTIME,
    )
    jvm_release: bool = option(
        True,
        "every event to Python as it arrives (default: the JVM holds events until the "
        "watermark passes them and hands Python all users' at once; thread mode, not with "
        "--rules-topic or CRM_PREFETCH=events)",
        flag="--no-jvm-release",
        group=RUNTIME,
    )
    enrichment_layout: Literal["inline", "sync", "async"] = option(
        "inline",
        "CRM lookups (configured by CRM_* variables): inline (default) in the detect operator, "
        "prefetched on background threads, an action held until its profile or its budget; "
        "sync: cached lookups in an operator after it (blocks detection on a slow CRM); async: "
        "PyFlink AsyncDataStream in a process-mode operator (fell far behind at 5k events/s)",
        group=RUNTIME,
    )
    profiles_path: Path | None = option(
        None,
        'a CRM snapshot as the CRM (JSONL, one {"user_id": ..., <fields>} per line; as '
        "CRM_BACKEND=file with CRM_PROFILES_FILE); not with another CRM_BACKEND",
        flag="--profiles",
        metavar="FILE.jsonl",
        group=RUNTIME,
    )
    metrics_reporter: Literal["none", "prometheus", "jmx", "slf4j"] = option(
        "none",
        "Flink metric reporter (its jar must be on Flink's classpath: see README)",
        group=RUNTIME,
    )
    prometheus_port: str = option(
        "9249",
        "port or range, e.g. 9249-9260",
        env=ENV_PROMETHEUS_PORT,
        metavar="PORT",
        group=RUNTIME,
    )
    jars: tuple[Path, ...] = option(
        (),
        "extra jar for the job (the Kafka connector is found in .cache/jars/flink)",
        flag="--jar",
        metavar="JAR",
        repeatable=True,
        group=RUNTIME,
    )
    rest_port: int | None = option(None, "MiniCluster REST port", metavar="PORT", group=RUNTIME)
    flink_conf: tuple[str, ...] = option(
        (),
        "any other Flink configuration option (repeatable)",
        metavar="KEY=VALUE",
        repeatable=True,
        group=RUNTIME,
    )
    crm: CrmSettings = option(CrmSettings(), "the CRM lookups, from CRM_* variables", flag=None)
    python_executable: str = option(sys.executable, "the workers' Python", flag=None)

    @property
    def kafka_mode(self) -> bool:
        return self.bootstrap_servers is not None

    _files = field_validator("events_path", "profiles_path", "jars")(checks.existing_files)
    _outputs = field_validator(
        "out_path", "late_out_path", "dlq_out_path", "suppressed_out_path", "outcomes_out_path"
    )(checks.writable)
    _checkpoints = field_validator("checkpoint_dir")(checks.checkpoint_uri)
    _bootstrap = field_validator("bootstrap_servers")(checks.reachable)
    _flink_conf = field_validator("flink_conf")(checks.key_values)

    @model_validator(mode="before")
    @classmethod
    def _idle_default(cls, values: Any) -> Any:
        # Kafka mode fires pending deadlines after idleness by default; a file replay does not.
        if isinstance(values, dict) and "idle_fire_after_ms" not in values:
            kafka = values.get("bootstrap_servers") is not None
            values = {**values, "idle_fire_after_ms": DEFAULT_IDLE_FIRE_AFTER_MS if kafka else None}
        if isinstance(values, dict) and values.get("rules_topic") and values.get("rules") is None:
            values = {**values, "rules": RuleSet()}  # no initial version: the topic brings them
        return values

    @model_validator(mode="after")
    def _consistent(self) -> DetectConfig:
        if self.events_path is not None and self.bootstrap_servers is not None:
            raise ValueError("give either --events (file mode) or --bootstrap-servers, not both")
        if self.events_path is None and self.bootstrap_servers is None:
            raise ValueError(
                "no input: give --events FILE.jsonl, or --bootstrap-servers / "
                f"{settings.ENV_KAFKA_BOOTSTRAP} for Kafka"
            )
        if self.events_path is not None:
            if self.out_path is None:
                raise ValueError("--out is required in file mode (--events)")
            if self.delivery == "exactly-once":
                raise ValueError("--delivery exactly-once needs Kafka (--bootstrap-servers)")
        if self.rules is None:
            raise ValueError("--rules is required (or --rules-topic, in Kafka mode)")
        if self.rules_topic is not None and self.events_path is not None:
            raise ValueError("--rules-topic needs Kafka (--bootstrap-servers), not --events")
        if self.rules_scope is not None:
            checks.within_scope(self.rules, self.rules_scope, self.rules_topic)
        if self.rules_topic and self.crm.backend != "none" and self.enrichment_layout != "inline":
            raise ValueError("--rules-topic with a CRM needs --enrichment-layout inline")
        if self.delivery == "exactly-once" and self.checkpoint_interval_ms == 0:
            raise ValueError(
                "--delivery exactly-once needs checkpoints (--checkpoint-interval > 0)"
            )
        return self

    @classmethod
    def from_args(cls, args, environ: Mapping[str, str] | None = None) -> DetectConfig:
        """Flags, then `environ` (default: the process environment), then the defaults."""
        environ = os.environ if environ is None else environ
        if getattr(args, "events_path", None) is not None:
            # A file replay ignores the Kafka variable a shell may have set for other commands.
            environ = {k: v for k, v in environ.items() if k != settings.ENV_KAFKA_BOOTSTRAP}
        profiles = getattr(args, "profiles_path", None)
        try:
            if profiles is not None:
                environ = with_profiles_file(environ, profiles)
            crm = from_env(environ)
        except CrmConfigError as error:
            raise OptionsError(f"CRM: {error}") from None
        return load(cls, args, environ, crm=crm)
