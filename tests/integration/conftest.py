"""Fixtures of the integration suite that need more than a broker: a Flink session cluster."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from moments_testing.flink_cluster import SessionCluster


@pytest.fixture(scope="session")
def session_cluster(tmp_path_factory) -> Iterator[SessionCluster]:
    """A standalone Flink cluster from PyFlink's own distribution: a JobManager and two
    TaskManagers of one slot each, on free ports, started for the first test that asks and
    stopped at the end of the session (every job cancelled first)."""
    cluster = SessionCluster(tmp_path_factory.mktemp("flink-session"), task_managers=2, slots=1)
    try:
        cluster.start()
    except Exception:
        logs = cluster.log_tail()
        cluster.stop()
        pytest.fail(f"the session cluster did not start:\n{logs}", pytrace=False)
    try:
        yield cluster
    finally:
        try:
            cluster.cancel_all()
        finally:
            cluster.stop()
