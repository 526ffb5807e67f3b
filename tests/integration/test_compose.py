"""deploy/compose/compose.yaml, offline: valid against the Compose Specification's JSON
schema (check-jsonschema's vendored copy) and accepted by `docker-compose config -q`
(Debian's docker-compose, installed by deploy/kubernetes/ensure-tools.sh); every service
on the host's network; the project's own Prometheus, alert and dashboard files mounted."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from consumer.dev.local_broker import kafka_version
from tests.integration.deploy_tools import BIN, COMPOSE_FILE, REPO_ROOT, kubernetes_tools, run_tool

COMPOSE_DIR = COMPOSE_FILE.parent
SHUTDOWN_DEADLINE_SECONDS = 25  # consumer.config.Settings default


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def docker_compose() -> str:
    kubernetes_tools()  # installs Debian's docker-compose with the rest of the tool chain
    found = shutil.which("docker-compose")
    assert found, "docker-compose is not on PATH after deploy/kubernetes/ensure-tools.sh"
    return found


def test_compose_file_matches_the_compose_spec_schema() -> None:
    run_tool(BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", COMPOSE_FILE)


def test_schema_check_catches_a_misspelt_key(tmp_path: Path, compose: dict) -> None:
    broken = {**compose, "services": {**compose["services"]}}
    broken["services"]["kafka"] = {**compose["services"]["kafka"], "netwrok_mode": "host"}
    path = tmp_path / "compose.yaml"
    path.write_text(yaml.safe_dump(broken))
    result = run_tool(
        BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", path, check=False
    )
    assert result.returncode != 0 and "netwrok_mode" in result.stdout


def test_docker_compose_config_accepts_it(docker_compose: str) -> None:
    run_tool(docker_compose, "--file", COMPOSE_FILE, "config", "--quiet")


def test_every_service_uses_the_host_network(compose: dict) -> None:
    assert "networks" not in compose
    for name, service in compose["services"].items():
        assert service.get("network_mode") == "host", name
        assert "networks" not in service and "ports" not in service, name


def test_the_stack_is_complete(compose: dict) -> None:
    services = compose["services"]
    kafka = services["kafka"]
    assert kafka["image"].startswith("docker.io/apache/kafka:")
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    assert "schema-registry" in services

    for consumer in consumer_members(compose).values():
        build = consumer["build"]
        assert (COMPOSE_DIR / build["context"] / build["dockerfile"]).resolve() == (
            REPO_ROOT / "deploy" / "container" / "Dockerfile"
        )
        assert consumer["read_only"] is True and consumer["tmpfs"] == ["/tmp"]
        grace = int(consumer["stop_grace_period"].removesuffix("s"))
        assert grace > SHUTDOWN_DEADLINE_SECONDS
        assert consumer["environment"]["SCHEMA_REGISTRY_URL"].startswith("http://127.0.0.1:")
        # Started once the registry answers its health check, not merely once started.
        assert consumer["depends_on"]["schema-registry"]["condition"] == "service_healthy"
    assert "healthcheck" in services["schema-registry"]

    mounted = {
        (COMPOSE_DIR / volume.split(":")[0]).resolve()
        for service in services.values()
        for volume in service.get("volumes", [])
    }
    for path in mounted:
        assert path.is_file(), path
    deploy = REPO_ROOT / "deploy"
    assert {
        deploy / "prometheus" / "prometheus.yml",
        deploy / "prometheus" / "alerts.yml",
        deploy / "grafana" / "loyalty-consumer.json",
        deploy / "compose" / "feed_samples.py",
    } <= mounted


def consumer_members(compose: dict) -> dict[str, dict]:
    return {
        name: service
        for name, service in compose["services"].items()
        if service.get("command") == ["run"]
    }


def test_every_member_has_its_own_name_and_port(compose: dict) -> None:
    """On the host's network, members with the default name (the host name) would share
    one group instance and transactional id, and one metrics port."""
    members = consumer_members(compose)
    assert len(members) >= 2
    names = [member["environment"]["LOYALTY_MEMBER_NAME"] for member in members.values()]
    ports = [member["environment"]["LOYALTY_METRICS_PORT"] for member in members.values()]
    assert len(set(names)) == len(names) and len(set(ports)) == len(ports)
    assert all("deploy" not in member and "scale" not in member for member in members.values())
    for member in members.values():
        healthcheck = " ".join(member["healthcheck"]["test"])
        assert f"127.0.0.1:{member['environment']['LOYALTY_METRICS_PORT']}/healthz" in healthcheck
    # Prometheus scrapes every member.
    scrape = yaml.safe_load((REPO_ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    (job,) = [job for job in scrape["scrape_configs"] if job["job_name"] == "loyalty-consumer"]
    targets = {target for group in job["static_configs"] for target in group["targets"]}
    assert targets == {f"{name}:{port}" for name, port in zip(names, ports, strict=True)}
    assert set(names) == set(members)  # the member is named as its compose service


def test_kafka_is_the_version_the_tests_use(compose: dict) -> None:
    image = compose["services"]["kafka"]["image"]
    assert image == f"docker.io/apache/kafka:{kafka_version()}"


def test_grafana_provisioning(compose: dict) -> None:
    datasources = yaml.safe_load((COMPOSE_DIR / "grafana" / "datasources.yaml").read_text())
    (prometheus,) = datasources["datasources"]
    assert prometheus["type"] == "prometheus" and prometheus["isDefault"] is True
    listen = next(
        arg.split("=", 1)[1]
        for arg in compose["services"]["prometheus"]["command"]
        if arg.startswith("--web.listen-address=")
    )
    assert prometheus["url"] == f"http://{listen}"
    dashboards = yaml.safe_load((COMPOSE_DIR / "grafana" / "dashboards.yaml").read_text())
    (provider,) = dashboards["providers"]
    dashboard_mount = next(
        volume
        for volume in compose["services"]["grafana"]["volumes"]
        if volume.startswith("../grafana/loyalty-consumer.json:")
    )
    assert dashboard_mount.split(":")[1].startswith(provider["options"]["path"] + "/")
