"""The deployment files agree with the code: docker-compose.yml, deploy/Dockerfile, deploy/k8s/.

Every expected value is read from the code or the pins (jobs/settings.py, the CLI parsers,
pyproject.toml, deploy/jars/pom.xml), and every job command line is parsed by the real `moments
run` / `moments deliver` parser, so a renamed flag, topic or environment variable fails here
rather than in a cluster. No Docker engine or Kubernetes API is needed.
"""

from __future__ import annotations

import argparse
import fnmatch
import re
import shlex
import tomllib
import xml.etree.ElementTree as ElementTree
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import pytest
import yaml

from jobs import deliver, detect, settings
from jobs.detection import environment
from jobs.detection.config import ENV_PROMETHEUS_PORT
from schemas.rules import load_rules
from udfs.delivery import settings as delivery_settings

ROOT = Path(__file__).resolve().parents[3]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
K8S_DIR = ROOT / "deploy" / "k8s"
POM = ROOT / "deploy" / "jars" / "pom.xml"

PYTHON_DRIVER = "org.apache.flink.client.python.PythonDriver"
VENDOR_SECRETS = (
    delivery_settings.ENV_BRAZE_API_KEY,
    delivery_settings.ENV_ITERABLE_API_KEY,
)
KNOWN_ENV = {
    settings.ENV_KAFKA_BOOTSTRAP,
    settings.ENV_CRM_DSN,
    ENV_PROMETHEUS_PORT,
    *(
        value
        for name, value in vars(delivery_settings).items()
        if name.startswith("ENV_") and isinstance(value, str)
    ),
}


# ---- the pins ---------------------------------------------------------------------------------


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _flink_version() -> str:
    pins = [d for d in _project()["dependencies"] if d.startswith("apache-flink==")]
    assert len(pins) == 1, "pyproject.toml must pin apache-flink exactly"
    return pins[0].split("==")[1]


def _pom_property(name: str) -> str:
    namespace = {"m": "http://maven.apache.org/POM/4.0.0"}
    value = ElementTree.parse(POM).getroot().find(f"m:properties/m:{name}", namespace)
    assert value is not None, f"{name} missing from {POM}"
    return value.text.strip()


def _image() -> str:
    return f"micro-moments:{_project()['version']}"


# ---- the Dockerfile -----------------------------------------------------------------------------


def _dockerfile_stages() -> list[list[str]]:
    """Instructions per stage, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: list[list[str]] = [[]]
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if (
            line.upper().startswith("FROM ")
            and stages[-1]
            and any(s.upper().startswith("FROM ") for s in stages[-1])
        ):
            stages.append([])
        stages[-1].append(re.sub(r"\s+", " ", line))
    return stages


def _args() -> dict[str, str]:
    args = {}
    for stage in _dockerfile_stages():
        for line in stage:
            match = re.fullmatch(r"ARG (\w+)=(\S+)", line)
            if match:
                args[match[1]] = match[2]
    return args


def _final_stage() -> list[str]:
    return _dockerfile_stages()[-1]


def _venv_dir() -> str:
    text = DOCKERFILE.read_text()
    match = re.search(r"python3 -m venv (\S+)", text)
    assert match, "the Dockerfile creates no venv"
    return match[1]


def _image_copies() -> list[tuple[str, str]]:
    """(context path, image path) of the final stage's COPY lines from the build context."""
    copies = []
    for line in _final_stage():
        parts = line.split()
        if parts[0].upper() == "COPY" and not any(p.startswith("--from") for p in parts):
            copies.append((parts[1], parts[2]))
    return copies


def _repo_path_in_image(image_path: str) -> Path | None:
    """The repository file the image holds at `image_path`, per the COPY lines."""
    for source, destination in _image_copies():
        if image_path == destination:
            return ROOT / source
        if image_path.startswith(destination.rstrip("/") + "/"):
            return ROOT / source / PurePosixPath(image_path).relative_to(destination)
    return None


def test_dockerfile_base_image_matches_the_pyflink_pin():
    flink = _flink_version()
    assert _args()["FLINK_IMAGE"] == f"flink:{flink}-java17"
    froms = [line for stage in _dockerfile_stages() for line in stage if line.startswith("FROM ")]
    assert froms == [
        "FROM ${FLINK_IMAGE} AS flink",
        "FROM ${JDK_IMAGE} AS udfs",
        "FROM ${FLINK_IMAGE} AS build",
        "FROM ${FLINK_IMAGE}",
    ]


def test_dockerfile_compiles_the_udfs_against_the_image_flink_and_puts_them_in_lib():
    udfs = next(stage for stage in _dockerfile_stages() if stage[0].endswith(" AS udfs"))
    assert "COPY --from=flink /opt/flink/lib /opt/flink/lib" in udfs
    assert "COPY udfs/jvm/src /src" in udfs
    assert any("javac" in line and "-cp '/opt/flink/lib/*'" in line for line in udfs)
    from jobs.detection.environment import UDF_JAR

    assert f"COPY --from=udfs /{UDF_JAR.name} /opt/flink/lib/{UDF_JAR.name}" in _final_stage()


def test_dockerfile_fetches_the_connector_of_the_pom_from_maven_central():
    version = _pom_property("flink.kafka.connector.version")
    assert _args()["FLINK_KAFKA_CONNECTOR_VERSION"] == version
    assert _args()["MAVEN_REPOSITORY"] == "https://repo1.maven.org/maven2"
    fetch = next(line for line in _final_stage() if "flink-sql-connector-kafka" in line)
    assert (
        "${MAVEN_REPOSITORY}/org/apache/flink/flink-sql-connector-kafka/"
        "${FLINK_KAFKA_CONNECTOR_VERSION}/${jar}" in fetch
    )
    assert '"/opt/flink/lib/${jar}"' in fetch
    assert "sha1sum -c" in fetch


def test_dockerfile_installs_the_project_into_the_venv_on_path():
    venv = _venv_dir()
    build = next(stage for stage in _dockerfile_stages() if stage[0].endswith(" AS build"))
    assert any(f"{venv}/bin/pip install" in line and line.endswith(" /src") for line in build)
    assert any(line.startswith("COPY pyproject.toml ") for line in build)
    for package in ("jobs", "udfs", "schemas"):
        assert f"COPY {package} /src/{package}" in build
    final = _final_stage()
    assert f"COPY --from=build {venv} {venv}" in final
    env = next(line for line in final if line.startswith("ENV PATH="))
    # PyFlink starts its workers with `python` from PATH.
    assert env.startswith(f"ENV PATH={venv}/bin:$PATH")
    assert any("libpython3" in line for line in final if line.startswith("RUN apt-get"))
    assert any("find_libpython" in line for line in final)
    assert final[-1] == "USER flink"


def test_dockerfile_keeps_the_prometheus_reporter_in_plugins():
    line = next(line for line in _final_stage() if "metrics-prometheus" in line)
    assert "/opt/flink/plugins/metrics-prometheus/" in line
    assert "/opt/flink/opt/flink-python-*.jar" in line


def _dockerignore_includes(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents wins."""
    included = True
    parts = PurePosixPath(path).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if pattern.startswith("**/"):
            matched = any(fnmatch.fnmatch(part, pattern[3:]) for part in parts)
        else:
            matched = any(
                fnmatch.fnmatch(c, pattern) and c.count("/") == pattern.count("/")
                for c in candidates
            )
        if matched:
            included = negate
    return included


def test_dockerignore_lets_every_copied_file_into_the_context():
    sources = [source for source, _ in _image_copies()]
    sources += ["pyproject.toml", "README.md", "jobs", "udfs", "schemas"]
    for source in sources:
        assert (ROOT / source).exists(), source
        probe = source if (ROOT / source).is_file() else f"{source}/x.py"
        assert _dockerignore_includes(probe), f".dockerignore leaves out {source}"
    for ignored in (".venv/bin/python", ".cache/jars/flink/x.jar", ".run/kafka", "tests/x.py"):
        assert not _dockerignore_includes(ignored), ignored


# ---- docker-compose.yml -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def _internal_bootstrap(compose: dict) -> str:
    listeners = compose["services"]["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    internal = [item for item in listeners.split(",") if item.startswith("INTERNAL://")]
    assert len(internal) == 1
    return internal[0].removeprefix("INTERNAL://")


def _flink_properties(environment: dict) -> dict[str, str]:
    properties = {}
    for line in environment["FLINK_PROPERTIES"].splitlines():
        if not line.strip():
            continue
        key, _, value = line.partition(":")
        # The image's entry point deletes all whitespace from each line.
        assert " " not in value.strip(), f"{key}: a value with spaces is mangled"
        properties[key.strip()] = value.strip()
    return properties


def _parser(module) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(exit_on_error=False)
    module.configure_parser(parser)
    return parser


def _split_python_driver(args: list[str]) -> tuple[dict[str, str], str, list[str]]:
    """Flink's options before `-py SCRIPT`, the script, and the job's own flags after it."""
    index = args.index("-py")
    options = dict(zip(args[:index:2], args[1:index:2], strict=True))
    return options, args[index + 1], args[index + 2 :]


def test_compose_uses_the_pinned_images(compose):
    services = compose["services"]
    kafka_image = f"apache/kafka:{_pom_property('kafka.version')}"
    assert services["kafka"]["image"] == kafka_image
    assert services["kafka-topics"]["image"] == kafka_image
    assert services["postgres"]["image"].startswith("postgres:")
    ours = {name for name, service in services.items() if "build" in service}
    assert ours == {"jobmanager", "taskmanager", "submit-detect", "deliver", "generator"}
    for name in ours:
        assert services[name]["image"] == _image(), name
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile"
        assert (ROOT / services[name]["build"]["context"] / "deploy" / "Dockerfile").is_file()
    assert services["jobmanager"]["command"] == "jobmanager"
    assert services["taskmanager"]["command"] == "taskmanager"


def test_compose_creates_exactly_the_topics_of_settings(compose):
    topics = compose["services"]["kafka-topics"]["environment"]["TOPICS"].split()
    assert tuple(topics) == settings.ALL_TOPICS
    assert compose["services"]["kafka"]["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_compose_kafka_is_reachable_from_containers_and_host(compose):
    environment = compose["services"]["kafka"]["environment"]
    advertised = environment["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert "INTERNAL://kafka:29092" in advertised
    assert "EXTERNAL://localhost:9092" in advertised
    assert "127.0.0.1:9092:9092" in compose["services"]["kafka"]["ports"]
    listener_names = {item.split("://")[0] for item in environment["KAFKA_LISTENERS"].split(",")}
    protocol_map = dict(
        item.split(":") for item in environment["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    assert listener_names == set(protocol_map)
    assert environment["KAFKA_CONTROLLER_LISTENER_NAMES"] in listener_names


def test_compose_submits_detect_with_flags_moments_run_accepts(compose):
    service = compose["services"]["submit-detect"]
    command = service["command"]
    assert command[:2] == ["flink", "run"]
    options = command[2:]
    options.remove("-d")  # detached: the service exits once the job is accepted
    flink_options, script, job_args = _split_python_driver(options)
    assert flink_options == {"-m": "jobmanager:8081", "-pyclientexec": f"{_venv_dir()}/bin/python"}
    assert _repo_path_in_image(script) == ROOT / "jobs" / "detect.py"

    args = _parser(detect).parse_args(job_args)
    assert args.bootstrap_servers == _internal_bootstrap(compose)
    assert args.events_topic == settings.EVENTS_TOPIC
    assert args.actions_topic == settings.ACTIONS_TOPIC
    assert args.dlq_topic == settings.EVENTS_DLQ_TOPIC
    assert args.late_topic == settings.LATE_EVENTS_TOPIC
    rules = _repo_path_in_image(args.rules)
    assert rules is not None and rules.is_file()
    load_rules(rules)
    # The guard against a second submission greps for the job name detect.py gives.
    assert "moments-detect" in service["entrypoint"][2]
    assert 'env.execute("moments-detect' in (ROOT / "jobs" / "detect.py").read_text()


def test_compose_flink_cluster_configuration(compose):
    services = compose["services"]
    venv_python = f"{_venv_dir()}/bin/python"
    for name in ("jobmanager", "taskmanager", "submit-detect"):
        properties = _flink_properties(services[name]["environment"])
        assert properties["jobmanager.rpc.address"] == "jobmanager"
        assert properties["python.executable"] == venv_python
        assert properties["python.client.executable"] == venv_python
        assert properties["metrics.reporter.prom.factory.class"] == environment.PROMETHEUS_FACTORY
        assert properties["metrics.reporter.prom.port"] == "9249"
    for name in ("jobmanager", "taskmanager"):
        properties = _flink_properties(services[name]["environment"])
        mounts = {volume.split(":")[1] for volume in services[name]["volumes"]}
        for key in ("execution.checkpointing.dir", "execution.checkpointing.savepoint-dir"):
            path = urlsplit(properties[key]).path
            assert any(path.startswith(mount + "/") for mount in mounts), (name, key)


def test_compose_crm_points_at_the_seeded_postgres(compose):
    services = compose["services"]
    postgres = services["postgres"]["environment"]
    for name in ("submit-detect", "taskmanager"):
        dsn = urlsplit(services[name]["environment"][settings.ENV_CRM_DSN])
        assert (dsn.hostname, dsn.port) == ("postgres", 5432)
        assert dsn.username == postgres["POSTGRES_USER"]
        assert dsn.path == "/" + postgres["POSTGRES_DB"]
    mounts = [v.split(":") for v in services["postgres"]["volumes"] if v.startswith("./")]
    init = sorted((target, source) for source, target, *_ in mounts)
    assert [source for _, source in init] == [
        "./deploy/local/crm_schema.sql",
        "./deploy/local/crm_seed.sql",
    ]
    for target, source in init:
        assert target.startswith("/docker-entrypoint-initdb.d/")
        assert (ROOT / source).is_file()


def test_compose_delivers_from_the_actions_topic(compose):
    service = compose["services"]["deliver"]
    assert service["entrypoint"] == ["moments"]
    assert service["command"][0] == "deliver"
    args = _parser(deliver).parse_args(service["command"][1:])
    assert args.bootstrap_servers == _internal_bootstrap(compose)
    assert args.topic == settings.ACTIONS_TOPIC
    assert args.dlq_topic == settings.DELIVERY_DLQ_TOPIC
    assert set(service["environment"]) <= KNOWN_ENV


def test_compose_secrets_have_no_values_in_the_file(compose):
    text = COMPOSE_FILE.read_text()
    for name in VENDOR_SECRETS:
        assert name in compose["services"]["deliver"]["environment"]
        for service in compose["services"].values():
            environment = service.get("environment") or {}
            if name in environment:
                assert environment[name] is None, f"{name} must come from the caller's env"
        assert not re.search(rf"\$\{{{name}:?[-=?]", text), f"{name} has a default in the file"


def test_compose_generator_feeds_the_events_topic(compose, produce_events):
    service = compose["services"]["generator"]
    assert service["profiles"] == ["generate"]
    script = service["command"][0] if isinstance(service["command"], list) else service["command"]
    generate, _, produce = script.partition("|")
    assert shlex.split(generate)[:2] == ["moments", "generate"]
    assert shlex.split(generate)[-2:] == ["--out", "-"]
    words = shlex.split(produce)
    assert words[0] == "python"
    assert _repo_path_in_image(words[1]) == ROOT / "deploy" / "produce_events.py"
    args = produce_events.parse_args(words[2:])
    assert args.topic == settings.EVENTS_TOPIC
    assert args.bootstrap_servers == _internal_bootstrap(compose)


def test_compose_starts_in_order(compose):
    services = compose["services"]
    for name, service in services.items():
        for dependency, spec in (service.get("depends_on") or {}).items():
            assert dependency in services, (name, dependency)
            condition = spec["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[dependency], (name, dependency)
            elif condition == "service_completed_successfully":
                assert services[dependency].get("restart") == "no", (name, dependency)
            else:
                assert condition == "service_started", (name, dependency)
    submit = services["submit-detect"]["depends_on"]
    assert submit["jobmanager"]["condition"] == "service_healthy"
    assert submit["kafka-topics"]["condition"] == "service_completed_successfully"
    assert submit["postgres"]["condition"] == "service_healthy"
    assert services["kafka-topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert "/overview" in " ".join(services["jobmanager"]["healthcheck"]["test"])
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"]


# ---- deploy/k8s/ --------------------------------------------------------------------------------


def _k8s_documents() -> dict[str, list[dict]]:
    return {
        path.name: [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
        for path in sorted(K8S_DIR.glob("*.yaml"))
    }


def _k8s(kind: str) -> list[dict]:
    return [doc for docs in _k8s_documents().values() for doc in docs if doc["kind"] == kind]


def test_every_k8s_manifest_parses_and_kustomization_lists_them_all():
    documents = _k8s_documents()
    kinds = sorted(doc["kind"] for docs in documents.values() for doc in docs)
    assert kinds == sorted(
        [
            "ConfigMap",
            "ConfigMap",
            "Deployment",
            "FlinkDeployment",
            "Kustomization",
            "PersistentVolumeClaim",
        ]
    )
    for docs in documents.values():
        for doc in docs:
            assert doc["apiVersion"] and doc["kind"]
            if doc["kind"] != "Kustomization":
                assert doc["metadata"]["name"]
    (kustomization,) = _k8s("Kustomization")
    assert sorted(kustomization["resources"]) == sorted(set(documents) - {"kustomization.yaml"})


def _detect() -> dict:
    (deployment,) = _k8s("FlinkDeployment")
    return deployment


def _configmap(name: str) -> dict:
    (configmap,) = [c for c in _k8s("ConfigMap") if c["metadata"]["name"] == name]
    return configmap


def _env_names(container: dict) -> set[str]:
    names = {item["name"] for item in container.get("env", [])}
    for source in container.get("envFrom", []):
        names |= set(_configmap(source["configMapRef"]["name"])["data"])
    return names


def _secret_refs(container: dict) -> list[dict]:
    return [
        item["valueFrom"]["secretKeyRef"]
        for item in container.get("env", [])
        if "secretKeyRef" in item.get("valueFrom", {})
    ]


def test_detect_flinkdeployment_runs_the_python_driver():
    spec = _detect()
    assert spec["apiVersion"] == "flink.apache.org/v1beta1"
    flink = _flink_version()
    major, minor, _ = flink.split(".")
    spec = spec["spec"]
    assert spec["image"] == _image()
    assert spec["flinkVersion"] == f"v{major}_{minor}"
    job = spec["job"]
    assert job["jarURI"] == f"local:///opt/flink/opt/flink-python-{flink}.jar"
    assert job["entryClass"] == PYTHON_DRIVER
    assert job["upgradeMode"] == "savepoint"
    assert job["state"] == "running"

    flink_options, script, job_args = _split_python_driver(job["args"])
    venv_python = f"{_venv_dir()}/bin/python"
    assert flink_options == {"-pyclientexec": venv_python}
    assert spec["flinkConfiguration"]["python.executable"] == venv_python
    assert _repo_path_in_image(script) == ROOT / "jobs" / "detect.py"
    args = _parser(detect).parse_args(job_args)
    assert args.events_topic == settings.EVENTS_TOPIC
    assert args.actions_topic == settings.ACTIONS_TOPIC
    assert args.dlq_topic == settings.EVENTS_DLQ_TOPIC
    assert args.late_topic == settings.LATE_EVENTS_TOPIC
    # Bootstrap servers come from the environment (the ConfigMap), as `moments run` reads them.
    assert args.bootstrap_servers is None
    (container,) = spec["podTemplate"]["spec"]["containers"]
    assert container["name"] == "flink-main-container"
    assert settings.ENV_KAFKA_BOOTSTRAP in _env_names(container)


def test_detect_flinkdeployment_checkpoints_on_its_volume():
    spec = _detect()["spec"]
    configuration = spec["flinkConfiguration"]
    pod = spec["podTemplate"]["spec"]
    (container,) = pod["containers"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    claims = {claim["metadata"]["name"] for claim in _k8s("PersistentVolumeClaim")}
    for key in (
        "execution.checkpointing.dir",
        "execution.checkpointing.savepoint-dir",
        "high-availability.storageDir",
    ):
        path = urlsplit(configuration[key]).path
        mount = next(m for m in container["volumeMounts"] if path.startswith(m["mountPath"] + "/"))
        claim = volumes[mount["name"]]["persistentVolumeClaim"]["claimName"]
        assert claim in claims, key
    (state,) = _k8s("PersistentVolumeClaim")
    assert state["spec"]["accessModes"] == ["ReadWriteMany"]  # JobManager and TaskManagers share it


def test_detect_flinkdeployment_reports_to_prometheus():
    spec = _detect()["spec"]
    configuration = spec["flinkConfiguration"]
    assert configuration["metrics.reporter.prom.factory.class"] == environment.PROMETHEUS_FACTORY
    port = configuration["metrics.reporter.prom.port"]
    (container,) = spec["podTemplate"]["spec"]["containers"]
    assert {"name": "metrics", "containerPort": int(port)} in container["ports"]
    assert spec["podTemplate"]["metadata"]["annotations"]["prometheus.io/port"] == port
    for part in ("jobManager", "taskManager"):
        assert {"memory", "cpu"} <= set(spec[part]["resource"])


def test_detect_flinkdeployment_mounts_the_rules_configmap():
    spec = _detect()["spec"]
    args = _parser(detect).parse_args(_split_python_driver(spec["job"]["args"])[2])
    rules_path = PurePosixPath(args.rules)
    pod = spec["podTemplate"]["spec"]
    (container,) = pod["containers"]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == str(rules_path.parent))
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    data = _configmap(volume["configMap"]["name"])["data"]
    assert rules_path.name in data
    assert yaml.safe_load(data[rules_path.name]) == yaml.safe_load(
        (ROOT / "examples" / "rules.yaml").read_text()
    ), "the ConfigMap's rules drifted from examples/rules.yaml"


def test_detect_flinkdeployment_environment():
    (container,) = _detect()["spec"]["podTemplate"]["spec"]["containers"]
    assert _env_names(container) <= KNOWN_ENV
    refs = _secret_refs(container)
    assert [ref["key"] for ref in refs] == ["crm-dsn"]
    assert {item["name"] for item in container["env"]} == {settings.ENV_CRM_DSN}


def test_deliver_is_a_plain_deployment_of_moments_deliver():
    (deployment,) = _k8s("Deployment")
    assert deployment["apiVersion"] == "apps/v1"
    spec = deployment["spec"]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    (container,) = spec["template"]["spec"]["containers"]
    assert container["image"] == _image()
    assert container["command"] == ["moments"]
    assert container["args"][0] == "deliver"
    args = _parser(deliver).parse_args(container["args"][1:])
    assert args.topic == settings.ACTIONS_TOPIC
    assert args.dlq_topic == settings.DELIVERY_DLQ_TOPIC
    assert args.group_id == deliver.DEFAULT_GROUP_ID
    assert args.bootstrap_servers is None  # from KAFKA_BOOTSTRAP_SERVERS, via the ConfigMap
    names = _env_names(container)
    assert names <= KNOWN_ENV
    assert settings.ENV_KAFKA_BOOTSTRAP in names
    assert set(VENDOR_SECRETS) <= names
    for item in container["env"]:
        assert "value" not in item, f"{item['name']}: secrets come from the Secret"
    refs = _secret_refs(container)
    assert {ref["name"] for ref in refs} == {"micro-moments-secrets"}
    assert all(ref["optional"] for ref in refs)  # either vendor alone is a valid setup


def test_both_jobs_read_one_secret():
    (deployment,) = _k8s("Deployment")
    (deliver_container,) = deployment["spec"]["template"]["spec"]["containers"]
    (detect_container,) = _detect()["spec"]["podTemplate"]["spec"]["containers"]
    names = {ref["name"] for c in (deliver_container, detect_container) for ref in _secret_refs(c)}
    assert names == {"micro-moments-secrets"}
    readme = (ROOT / "deploy" / "README.md").read_text()
    for c in (deliver_container, detect_container):
        for ref in _secret_refs(c):
            assert f"--from-literal={ref['key']}=" in readme, f"README does not create {ref['key']}"
