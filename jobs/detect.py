"""`moments run`: the detection job's command, its parser generated from `DetectConfig`, and the
file the Flink CLI runs (`flink run -py jobs/detect.py --rules ...`, or `python -m jobs.detect`).
The job itself lives in jobs/detection/: options, environment, topology.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from jobs.detection.config import DetectConfig
from jobs.options import add_arguments, environment_help


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = environment_help(DetectConfig)
    add_arguments(parser, DetectConfig)


def run(args: argparse.Namespace) -> int:
    config = DetectConfig.from_args(args)
    if not os.environ.get("PYFLINK_GATEWAY_PORT"):  # under `flink run` the cluster logs it
        print(f"moments run: the job's log is in {log_dir()} (FLINK_LOG_DIR)", file=sys.stderr)
    if config.kafka_mode:
        run_kafka_mode(config)
        return 0
    summary = run_file_mode(config)
    print(
        "moments run: {events_in} events in, {processed} processed, {late} late, "
        "{dead_lettered} dead-lettered; {actions} actions".format(**summary)
        + (
            "; {suppressed} suppressed, {outcomes} outcomes".format(**summary)
            if summary["suppressed"] or summary["outcomes"]
            else ""
        ),
        file=sys.stderr,
    )
    return 0


def run_file_mode(config: DetectConfig) -> dict[str, int]:
    """Run to the end of the events file on a local MiniCluster, writing the output files."""
    from jobs.connectors.files import FileOutputs
    from jobs.detection.environment import create_environment
    from jobs.detection.topology import build_pipeline

    env, t_env = create_environment(config)
    rows = build_pipeline(env, t_env, config)
    with rows.execute_and_collect("moments-detect (file)") as results:
        counts = FileOutputs(config).write_all(results)
    events_in = _count_records(config.events_path)
    return {
        "events_in": events_in,
        "processed": events_in - counts["late"] - counts["dlq"],
        "late": counts["late"],
        "dead_lettered": counts["dlq"],
        "actions": counts["action"],
        "suppressed": counts["suppressed"],
        "outcomes": counts["outcome"],
    }


def run_kafka_mode(config: DetectConfig) -> None:
    """Run until cancelled: the events topic in, the actions, late and DLQ topics out."""
    from jobs.connectors.kafka_sink import add_kafka_sink
    from jobs.detection.environment import create_environment
    from jobs.detection.topology import build_pipeline

    env, t_env = create_environment(config)
    rows = build_pipeline(env, t_env, config)
    add_kafka_sink(t_env, rows, config).attach_as_datastream()
    env.execute("moments-detect (kafka)")


def log_dir() -> str:
    """Where the local job logs (Flink's log and its operators' Python logging): FLINK_LOG_DIR,
    else the log directory of PyFlink's own distribution, one file each job overwrites."""
    if os.environ.get("FLINK_LOG_DIR"):
        return os.environ["FLINK_LOG_DIR"]
    import pyflink

    return os.path.join(os.path.dirname(os.path.abspath(pyflink.__file__)), "log")


def _count_records(path: Path) -> int:
    with open(path, "rb") as lines:
        return sum(1 for line in lines if line.strip())


if __name__ == "__main__":
    from jobs.cli import main

    sys.exit(main(["run", *sys.argv[1:]]))
