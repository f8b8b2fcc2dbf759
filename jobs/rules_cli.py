"""`moments rules publish|list`: live rules on the compacted rules topic (DESIGN.md "Live rules").

`publish FILE --version V [--effective-from TS]` validates the file as `moments validate` does
and writes the record (key `rules`), creating the topic (compacted, one partition: publication
order is offset order) if missing. `list` reads the topic from its beginning to its end offsets
at start and prints each record's version, effective_from and validity.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import yaml

from jobs.cli import UsageError
from jobs.options import Options, add_arguments, load, option
from jobs.settings import (
    ENV_KAFKA_BOOTSTRAP,
    LOCAL_KAFKA_BOOTSTRAP,
    RULES_STATUS_TOPIC,
    RULES_TOPIC,
    TOPIC_CONFIGS,
)
from schemas.rules import RuleError, RuleFileError
from schemas.rules_record import (
    RULES_KEY,
    parse_record_bytes,
    parse_rules_record,
    record_value,
)


class RulesTopicOptions(Options):
    bootstrap_servers: str = option(
        LOCAL_KAFKA_BOOTSTRAP,
        f"Kafka bootstrap servers (default: ${ENV_KAFKA_BOOTSTRAP} or {LOCAL_KAFKA_BOOTSTRAP})",
        env=ENV_KAFKA_BOOTSTRAP,
        metavar="HOST:PORT",
    )
    topic: str = option(RULES_TOPIC, "the rules topic (default %(default)s)")
    status_topic: str = option(
        RULES_STATUS_TOPIC,
        "list: the status topic a running job reports each version on (default %(default)s)",
    )


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "rules_command",
        choices=("publish", "list"),
        metavar="publish|list",
        help="publish FILE: validate and publish a version; list: the versions on the topic",
    )
    parser.add_argument("file", nargs="?", metavar="FILE", help="publish: the rules file (YAML)")
    parser.add_argument(
        "--version", dest="rules_version", metavar="V", help="publish: the version's name, e.g. v42"
    )
    parser.add_argument(
        "--effective-from",
        metavar="TS",
        help="publish: event time of the switch, epoch ms or RFC 3339 with an offset "
        "(default: the watermark when the job receives it)",
    )
    add_arguments(parser, RulesTopicOptions)


def effective_from_ms(text: str | None) -> int | None:
    """Epoch ms, or an RFC 3339 time with `Z` or an offset."""
    if text is None:
        return None
    text = text.strip()
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise UsageError(
            f"--effective-from: {text!r} is neither epoch ms nor RFC 3339 with an offset"
        )
    return int(moment.timestamp() * 1000)


def read_record(path: str, version: str, effective_from: int | None) -> dict:
    """The record's value for a rules file, validated; RuleFileError lists every problem."""
    file = Path(path)
    try:
        document = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as error:
        raise RuleFileError(
            path, [RuleError("-", "file", f"cannot read {path}: {error.strerror}")]
        ) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise RuleFileError(
            path, [RuleError("-", "file", f"not valid YAML{where}: {problem}")]
        ) from None
    # The record travels as JSON: what JSON cannot hold (a YAML date, say) fails here.
    value = json.loads(json.dumps(record_value(version, effective_from, document), default=str))
    parse_rules_record(value, path)
    return value


def run(args: argparse.Namespace) -> int:
    if args.rules_command == "publish":
        if args.file is None or args.rules_version is None:
            raise UsageError("rules publish needs FILE and --version V")
        return _publish(args)
    if args.file is not None or args.rules_version is not None or args.effective_from:
        raise UsageError("rules list takes no FILE, --version or --effective-from")
    return _list(args)


def _publish(args) -> int:
    effective_from = effective_from_ms(args.effective_from)
    try:
        value = read_record(args.file, args.rules_version, effective_from)
    except RuleFileError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        print(f"{args.file}: {len(error.problems)} problem(s); nothing published", file=sys.stderr)
        return 2
    options = load(RulesTopicOptions, args)
    servers = _servers(options.bootstrap_servers)
    _ensure_topic(servers, options.topic)
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=servers, acks="all")
    try:
        sent = producer.send(
            options.topic, key=RULES_KEY.encode(), value=json.dumps(value).encode()
        ).get(timeout=30)
    finally:
        producer.close()
    when = "at the job's watermark" if effective_from is None else f"from {_format(effective_from)}"
    where = f"{options.topic}[{sent.partition}]@{sent.offset}"
    print(f"published {args.rules_version} ({when}) to {where}")
    return 0


def _list(args) -> int:
    options = load(RulesTopicOptions, args)
    servers = _servers(options.bootstrap_servers)
    rows = []
    for partition, offset, raw in _records(servers, options.topic):
        where = f"{options.topic}[{partition}]@{offset}"
        try:
            record = parse_record_bytes(raw, where)
        except RuleFileError as error:
            version = _raw_version(raw)
            rows.append((offset, version, "-", f"invalid: {error.problems[0]}"))
            continue
        since = "job watermark" if record.effective_from is None else _format(record.effective_from)
        rows.append((offset, record.version, since, f"valid ({len(record.rules)} rule(s))"))
    if not rows:
        print(f"{options.topic}: no rules records")
        return 0
    jobs = _job_statuses(servers, options.status_topic)
    header = ("offset", "version", "effective_from", "validity", "running job")
    rows = [(*row, jobs.get(row[1], "-") if jobs is not None else "-") for row in rows]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        cells = [str(cell).ljust(width) for cell, width in zip(row[:4], widths, strict=True)]
        print("  ".join([*cells, row[4]]))
    if jobs is None:
        print(f"({options.status_topic}: no such topic: no job has reported a version yet)")
    elif (current := _latest_applied(servers, options.status_topic)) is not None:
        print(f"the job applies {current} (the latest version it reported applied)")
    return 0


def _job_statuses(servers: list[str], topic: str) -> dict[str, str] | None:
    """Per version, what the job's subtasks reported on the status topic (their latest status
    each): `applied from T (n subtasks)` or `rejected: <first problem>`; None without the topic."""
    statuses = _status_rows(servers, topic)
    if statuses is None:
        return None
    latest: dict[tuple[str, object], dict] = {}
    for status in statuses:
        latest[(status.get("version"), status.get("subtask"))] = status
    applied: dict[str, list[dict]] = {}
    rejected: dict[str, dict] = {}
    for (version, _), status in latest.items():
        if status.get("status") == "applied":
            applied.setdefault(version, []).append(status)
        elif status.get("status") == "rejected":
            rejected[version] = status
    out: dict[str, str] = {}
    for version, status in rejected.items():
        problem = (status.get("problems") or [{}])[0]
        out[version] = "rejected: " + ": ".join(
            str(problem[k]) for k in ("rule", "field", "reason") if problem.get(k)
        )
    for version, statuses in applied.items():
        times = sorted({s.get("applied_from") or 0 for s in statuses})
        at = ", ".join("the start" if t == 0 else _format(t) for t in times)
        out[version] = f"applied from {at} ({len(statuses)} subtask(s))"
    return out


def _latest_applied(servers: list[str], topic: str) -> str | None:
    applied = [s for s in _status_rows(servers, topic) or () if s.get("status") == "applied"]
    return applied[-1].get("version") if applied else None


def _status_rows(servers: list[str], topic: str) -> list[dict] | None:
    from jobs.connectors.brokers import TopicReadError, read_to_end

    rows = []
    try:
        for _, _, raw in sorted(read_to_end(servers, topic), key=lambda r: (r[1], r[0])):
            try:
                row = json.loads(raw)
            except ValueError:
                continue
            if isinstance(row, dict):
                rows.append(row)
    except TopicReadError:
        return None
    return rows


def _raw_version(raw: bytes) -> str:
    try:
        version = json.loads(raw).get("version")
    except (ValueError, AttributeError):
        return "?"
    return version if isinstance(version, str) else "?"


def _format(epoch_ms: int) -> str:
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return f"{epoch_ms} ({moment.isoformat(timespec='milliseconds').replace('+00:00', 'Z')})"


def _servers(text: str) -> list[str]:
    from jobs.connectors.brokers import check_bootstrap

    try:
        return check_bootstrap(text).split(",")
    except ValueError as error:
        raise UsageError(f"--bootstrap-servers: {error}") from None


def _ensure_topic(servers: list[str], topic: str) -> None:
    """The rules topic, compacted with one partition, unless it exists."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=servers, client_id="moments-rules")
    try:
        if topic not in admin.list_topics():
            configs = TOPIC_CONFIGS.get(RULES_TOPIC, {})
            try:
                admin.create_topics(
                    [NewTopic(topic, 1, 1, topic_configs=configs)], timeout_ms=10_000
                )
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()


def _records(servers: list[str], topic: str, idle_timeout_s: float = 30.0):
    """(partition, offset, value) of every record up to the end offsets at start."""
    from jobs.connectors.brokers import TopicReadError, read_to_end

    try:
        yield from read_to_end(servers, topic, idle_timeout_s)
    except TopicReadError as error:
        raise UsageError(f"{error} (publish a version first)") from None
