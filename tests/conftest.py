"""Fixtures for the real services integration tests use: Kafka and the CRM PostgreSQL.

Each service comes from, in order:
1. its environment variable (KAFKA_BOOTSTRAP_SERVERS, CRM_DSN), used as given: such a database must
   already hold deploy/local/crm_schema.sql and crm_seed.sql;
2. testcontainers, when a Docker engine answers a ping (apache/kafka and postgres images);
3. the local scripts deploy/local/{kafka,postgres}.sh, started here and stopped at the end of the
   session only if this session started them.

The fixtures are lazy: only tests that ask for them (the integration ones) start anything, so
`pytest -m 'not integration'` needs no JVM and no database.
"""

from __future__ import annotations

import functools
import os
import re
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from jobs.settings import (
    ENV_CRM_DSN,
    ENV_KAFKA_BOOTSTRAP,
    LOCAL_CRM_DSN,
    LOCAL_KAFKA_BOOTSTRAP,
)
from moments_testing.flink_job import has_leaders
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[1]
LOCAL_SCRIPTS = ROOT / "deploy" / "local"
CRM_SQL = (LOCAL_SCRIPTS / "crm_schema.sql", LOCAL_SCRIPTS / "crm_seed.sql")
KAFKA_IMAGE = "apache/kafka:4.1.1"  # same version as deploy/jars/pom.xml
POSTGRES_IMAGE = "postgres:16-alpine"
SERVICE_START_TIMEOUT_S = 180


@functools.cache
def docker_engine_available() -> bool:
    """True when a Docker engine answers; a client without a daemon fails fast."""
    try:
        import docker

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def _run_local_script(script: str, command: str) -> subprocess.CompletedProcess[str]:
    # PYTHON: the broker script's readiness check runs in this interpreter (it has kafka-python).
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(
        [str(LOCAL_SCRIPTS / script), command],
        env=env,
        capture_output=True,
        text=True,
        timeout=SERVICE_START_TIMEOUT_S,
        check=False,
    )


@contextmanager
def local_service(script: str) -> Iterator[None]:
    """Starts the service unless it is already up; stops it afterwards only if we started it."""
    if _run_local_script(script, "status").returncode == 0:
        yield
        return
    started = _run_local_script(script, "start")
    if started.returncode != 0:
        pytest.fail(
            f"deploy/local/{script} start failed:\n{started.stdout}{started.stderr}", pytrace=False
        )
    try:
        yield
    finally:
        stopped = _run_local_script(script, "stop")
        if stopped.returncode != 0:
            print(f"deploy/local/{script} stop failed:\n{stopped.stdout}{stopped.stderr}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _kafka_ready(bootstrap: str) -> bool:
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        admin.list_topics()
        return True
    finally:
        admin.close()


@contextmanager
def kafka_container() -> Iterator[str]:
    """A KRaft broker in the apache/kafka image.

    testcontainers' KafkaContainer drives the Confluent image's start scripts, which apache/kafka
    does not have; so a plain container, with the host port equal to the container port so the
    advertised listener is right before the container starts.
    """
    from kafka.errors import KafkaError
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.docker_client import DockerClient

    host = DockerClient().host()
    port = _free_port()
    container = (
        DockerContainer(KAFKA_IMAGE)
        .with_bind_ports(port, port)
        .with_envs(
            KAFKA_NODE_ID="1",
            KAFKA_PROCESS_ROLES="broker,controller",
            KAFKA_LISTENERS=f"PLAINTEXT://0.0.0.0:{port},CONTROLLER://localhost:9093",
            KAFKA_ADVERTISED_LISTENERS=f"PLAINTEXT://{host}:{port}",
            KAFKA_CONTROLLER_LISTENER_NAMES="CONTROLLER",
            KAFKA_LISTENER_SECURITY_PROTOCOL_MAP="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            KAFKA_CONTROLLER_QUORUM_VOTERS="1@localhost:9093",
            KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR="1",
            KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR="1",
            KAFKA_TRANSACTION_STATE_LOG_MIN_ISR="1",
            KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR="1",
            KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR="1",
            KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS="0",
        )
    )
    with container:
        bootstrap = f"{host}:{port}"
        wait_for(
            lambda: _kafka_ready(bootstrap),
            timeout=SERVICE_START_TIMEOUT_S,
            interval=1.0,
            message=f"Kafka container on {bootstrap}",
            ignore=(KafkaError, OSError),
        )
        yield bootstrap


def load_crm_sql(dsn: str) -> None:
    """Loads the CRM schema and seed (both idempotent) into the database at `dsn`."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        for sql_file in CRM_SQL:
            conn.execute(sql_file.read_text())


@contextmanager
def postgres_container() -> Iterator[str]:
    from testcontainers.postgres import PostgresContainer

    with PostgresContainer(
        POSTGRES_IMAGE, username="moments", password="moments", dbname="crm", driver=None
    ) as container:
        dsn = container.get_connection_url()
        load_crm_sql(dsn)
        yield dsn


def _local_kafka_bootstrap() -> str:
    port = os.environ.get("KAFKA_LOCAL_PORT")
    return f"127.0.0.1:{port}" if port else LOCAL_KAFKA_BOOTSTRAP


def _local_crm_dsn() -> str:
    port = os.environ.get("PG_LOCAL_PORT")
    return LOCAL_CRM_DSN.replace(":55432/", f":{port}/") if port else LOCAL_CRM_DSN


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """`host:port` of a Kafka 4 broker for this test session."""
    if configured := os.environ.get(ENV_KAFKA_BOOTSTRAP):
        yield configured
    elif docker_engine_available():
        with kafka_container() as bootstrap:
            yield bootstrap
    else:
        with local_service("kafka.sh"):
            yield _local_kafka_bootstrap()


@pytest.fixture(scope="session")
def crm_dsn() -> Iterator[str]:
    """A libpq URL of the CRM database (table crm_profiles, users u-1..u-400 seeded)."""
    if configured := os.environ.get(ENV_CRM_DSN):
        yield configured
    elif docker_engine_available():
        with postgres_container() as dsn:
            yield dsn
    else:
        with local_service("postgres.sh"):
            yield _local_crm_dsn()


@pytest.fixture(scope="session")
def kafka_admin(kafka_bootstrap: str):
    """A kafka-python KafkaAdminClient on the session's broker."""
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="micro-moments-tests")
    yield admin
    admin.close()


@pytest.fixture
def kafka_topic(kafka_admin, request: pytest.FixtureRequest) -> Iterator[Callable[..., str]]:
    """Factory: `kafka_topic(partitions=1, configs=None) -> name` of a new, empty, unique topic.

    The topics are deleted when the test ends.
    """
    from kafka.admin import NewTopic
    from kafka.errors import KafkaError

    created: list[str] = []
    test_name = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name)[:100]

    def create(partitions: int = 1, configs: dict[str, str] | None = None) -> str:
        name = f"test.{test_name}.{uuid.uuid4().hex[:8]}"
        kafka_admin.create_topics(
            [NewTopic(name, partitions, 1, topic_configs=configs or {})], timeout_ms=30000
        )
        created.append(name)
        wait_for(
            lambda: has_leaders(kafka_admin, name),
            timeout=30,
            message=f"leaders for topic {name}",
            ignore=(KafkaError,),
        )
        return name

    yield create
    if created:
        try:
            kafka_admin.delete_topics(created, timeout_ms=30000)
        except KafkaError as error:
            print(f"could not delete test topics {created}: {error!r}")
