"""The detection job's configuration: one pydantic model read from flags and environment, validated
before any JVM starts, so a user mistake is one line (`moments run: ...`), not a stack trace.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from jobs import settings
from schemas.durations import parse_duration_ms
from schemas.errors import UserError
from schemas.rules import Rule, RuleFileError, load_rules
from udfs.crm import CrmConfigError, CrmSettings, from_env
from udfs.decode import DEFAULT_MAX_FUTURE_MS

ENV_PROMETHEUS_PORT = "MOMENTS_PROMETHEUS_PORT"
DEFAULT_IDLE_FIRE_AFTER_MS = 5_000


class ConfigError(UserError, ValueError):
    """A setting the user must fix; the message names the flag and the reason."""


def parse_max_future(value: str, flag: str = "--max-future") -> int | None:
    """`--max-future`: how far past wall-clock now an event's ts may lie (ms), or None for
    `off` (synthetic data in the future); `0` allows nothing ahead of now."""
    if str(value).strip().lower() == "off":
        return None
    return parse_duration_flag(value, flag, allow_zero=True)


def parse_duration_flag(value: str, flag: str, allow_zero: bool = False) -> int:
    """A duration flag (`150ms`, `2s`, ...) in milliseconds; `0` where a zero makes sense."""
    text = str(value).strip()
    if allow_zero and text in ("0", "0ms", "0s"):
        return 0
    try:
        return parse_duration_ms(text)
    except ValueError as error:
        raise ConfigError(f"{flag}: {error}") from None


class DetectConfig(BaseModel):
    """Everything `moments run` needs; built by `from_args`, passed down to the job builder."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    rules_path: Path
    rules: list[Rule] = Field(repr=False)

    # File mode (the embedded default: no Kafka needed).
    events_path: Path | None = None
    out_path: Path | None = None
    late_out_path: Path | None = None
    dlq_out_path: Path | None = None

    # Kafka mode.
    bootstrap_servers: str | None = None
    events_topic: str = settings.EVENTS_TOPIC
    actions_topic: str = settings.ACTIONS_TOPIC
    dlq_topic: str = settings.EVENTS_DLQ_TOPIC
    late_topic: str = settings.LATE_EVENTS_TOPIC
    group_id: str = "moments-detect"
    starting_offsets: Literal["earliest", "latest", "committed"] = "committed"
    delivery: Literal["at-least-once", "exactly-once"] = "at-least-once"
    transactional_id_prefix: str = "moments-detect"
    checkpoint_interval_ms: int = Field(10_000, ge=0)
    checkpoint_dir: str | None = None

    # Event time.
    max_out_of_orderness_ms: int = Field(2_000, ge=0)
    # Guard rail: ts beyond wall-clock now + this is dead-lettered; None: no bound (`off`).
    max_future_ms: int | None = Field(DEFAULT_MAX_FUTURE_MS, ge=0)
    idle_fire_after_ms: int | None = Field(None, ge=1)
    source_idle_timeout_ms: int = Field(10_000, ge=1)
    state_ttl_ms: int = Field(7 * 86_400_000, ge=1)

    # Runtime.
    parallelism: int | None = Field(None, ge=1)
    execution_mode: Literal["process", "thread"] = "thread"
    jvm_prefilter: bool = True
    crm: CrmSettings = Field(default_factory=CrmSettings)
    enrichment_layout: Literal["sync", "async"] = "async"
    metrics_reporter: Literal["none", "prometheus", "jmx", "slf4j"] = "none"
    prometheus_port: str = "9249"
    python_executable: str = sys.executable
    jars: tuple[Path, ...] = ()

    @property
    def kafka_mode(self) -> bool:
        return self.bootstrap_servers is not None

    @model_validator(mode="after")
    def _consistent(self) -> DetectConfig:
        if self.events_path is not None and self.bootstrap_servers is not None:
            raise ConfigError("give either --events (file mode) or --bootstrap-servers, not both")
        if self.events_path is None and self.bootstrap_servers is None:
            raise ConfigError(
                "no input: give --events FILE.jsonl, or --bootstrap-servers / "
                f"{settings.ENV_KAFKA_BOOTSTRAP} for Kafka"
            )
        if self.events_path is not None:
            if self.out_path is None:
                raise ConfigError("--out is required in file mode (--events)")
            if self.delivery == "exactly-once":
                raise ConfigError("--delivery exactly-once needs Kafka (--bootstrap-servers)")
        if self.delivery == "exactly-once" and self.checkpoint_interval_ms == 0:
            raise ConfigError(
                "--delivery exactly-once needs checkpoints (--checkpoint-interval > 0)"
            )
        return self

    @classmethod
    def from_args(cls, args, environ: Mapping[str, str] | None = None) -> DetectConfig:
        """Flags win over environment; every file and duration is checked here."""
        environ = os.environ if environ is None else environ
        rules_path = Path(args.rules)
        try:
            rules = load_rules(rules_path)
        except RuleFileError as error:
            raise ConfigError(f"--rules {rules_path}: {error}") from None

        events_path = _existing_file(args.events, "--events") if args.events else None
        bootstrap = args.bootstrap_servers
        if bootstrap is None and events_path is None:
            bootstrap = environ.get(settings.ENV_KAFKA_BOOTSTRAP) or None
        if bootstrap is not None:
            bootstrap = _check_bootstrap(bootstrap)

        idle = args.idle_fire_after
        if idle is None:
            idle_ms = DEFAULT_IDLE_FIRE_AFTER_MS if bootstrap else None
        elif idle.strip().lower() in ("off", "0", "none"):
            idle_ms = None
        else:
            idle_ms = parse_duration_flag(idle, "--idle-fire-after")

        try:
            crm = from_env(environ)
        except CrmConfigError as error:
            raise ConfigError(f"CRM: {error}") from None

        jars = tuple(_existing_file(j, "--jar") for j in (args.jar or []))
        values = dict(
            rules_path=rules_path,
            rules=rules,
            events_path=events_path,
            out_path=_writable(args.out, "--out"),
            late_out_path=_writable(args.late_out, "--late-out"),
            dlq_out_path=_writable(args.dlq_out, "--dlq-out"),
            bootstrap_servers=bootstrap,
            events_topic=args.events_topic,
            actions_topic=args.actions_topic,
            dlq_topic=args.dlq_topic,
            late_topic=args.late_topic,
            group_id=args.group_id,
            starting_offsets=args.starting_offsets,
            delivery=args.delivery,
            transactional_id_prefix=args.transactional_id_prefix,
            checkpoint_interval_ms=parse_duration_flag(
                args.checkpoint_interval, "--checkpoint-interval", allow_zero=True
            ),
            checkpoint_dir=_checkpoint_dir(args.checkpoint_dir),
            max_out_of_orderness_ms=parse_duration_flag(
                args.max_out_of_orderness, "--max-out-of-orderness", allow_zero=True
            ),
            max_future_ms=parse_max_future(args.max_future),
            idle_fire_after_ms=idle_ms,
            source_idle_timeout_ms=parse_duration_flag(
                args.source_idle_timeout, "--source-idle-timeout"
            ),
            state_ttl_ms=parse_duration_flag(args.state_ttl, "--state-ttl"),
            parallelism=args.parallelism,
            execution_mode=args.execution_mode,
            jvm_prefilter=not args.no_jvm_prefilter,
            crm=crm,
            enrichment_layout=args.enrichment_layout,
            metrics_reporter=args.metrics_reporter,
            prometheus_port=environ.get(ENV_PROMETHEUS_PORT, args.prometheus_port),
            jars=jars,
        )
        if args.parallelism is not None and args.parallelism < 1:
            raise ConfigError("--parallelism must be at least 1")
        try:
            return cls(**values)
        except ValidationError as error:
            raise ConfigError(_first_problem(error)) from None


def _existing_file(value: str, flag: str) -> Path:
    path = Path(value)
    if not path.is_file():
        raise ConfigError(f"{flag} {value}: no such file")
    return path.resolve()


def _writable(value: str | None, flag: str) -> Path | None:
    if value is None:
        return None
    path = Path(value)
    parent = path.resolve().parent
    if not parent.is_dir():
        raise ConfigError(f"{flag} {value}: directory {parent} does not exist")
    return path.resolve()


def _checkpoint_dir(value: str | None) -> str | None:
    if value is None:
        return None
    if "://" in value:
        return value
    path = Path(value).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path.as_uri()


def _check_bootstrap(servers: str, timeout_s: float = 3.0) -> str:
    """At least one bootstrap server must accept a TCP connection: an unknown broker is a usage
    error up front, not a job that retries forever."""
    addresses = [s.strip() for s in servers.split(",") if s.strip()]
    if not addresses:
        raise ConfigError("--bootstrap-servers is empty")
    problems = []
    for address in addresses:
        host, sep, port = address.rpartition(":")
        if not sep or not port.isdigit():
            raise ConfigError(f"--bootstrap-servers {address!r}: expected host:port")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
                return ",".join(addresses)
        except OSError as error:
            problems.append(f"{address} ({error.strerror or error})")
    raise ConfigError(f"no Kafka broker reachable at {', '.join(problems)}")


def _first_problem(error: ValidationError) -> str:
    item = error.errors(include_url=False)[0]
    message = item["msg"].removeprefix("Value error, ")
    field = ".".join(str(p) for p in item["loc"])
    return f"{field}: {message}" if field else message
