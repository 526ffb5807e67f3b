"""The Helm chart, offline: helm lint --strict, and helm template's output validated by
kubeconform -strict against Kubernetes' schemas and KEDA's and the Prometheus operator's
CRD schemas (no cluster, no download). What the rendered objects promise is asserted
here; that a real API server accepts them is test_kubernetes_apply.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.integration.deploy_tools import CHART, KubernetesTools, kubernetes_tools, run_tool

# Every optional object on: the Secret, the ServiceMonitor, alongside the defaults.
ALL_OBJECTS = (
    "--set",
    "webhookSecrets.mageLoyalty=mage-secret",
    "--set",
    "webhookSecrets.rivo=rivo-secret",
    "--set",
    "serviceMonitor.enabled=true",
)
DEFAULT_SHUTDOWN_DEADLINE_SECONDS = 25  # consumer.config.Settings


@pytest.fixture(scope="module")
def tools() -> KubernetesTools:
    return kubernetes_tools()


def render(tools: KubernetesTools, *args: str, check: bool = True):
    return run_tool(
        tools.helm,
        "template",
        "orders",
        CHART,
        "--namespace",
        "loyalty",
        "--kube-version",
        tools.kubernetes_version,
        *args,
        check=check,
    )


def objects(manifest: str) -> dict[str, dict]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(manifest) if doc}


def kubeconform(tools: KubernetesTools, path: Path):
    return run_tool(
        tools.kubeconform,
        "-strict",
        "-summary",
        "-output",
        "text",
        "-schema-location",
        tools.schema_location,
        path,
        check=False,
    )


def test_helm_lint_strict(tools: KubernetesTools) -> None:
    run_tool(tools.helm, "lint", "--strict", CHART)
    run_tool(tools.helm, "lint", "--strict", CHART, *ALL_OBJECTS)


def test_rendered_objects_are_valid_against_offline_schemas(
    tools: KubernetesTools, tmp_path: Path
) -> None:
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(render(tools, *ALL_OBJECTS).stdout)
    result = kubeconform(tools, manifest)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Valid: 6, Invalid: 0, Errors: 0, Skipped: 0" in result.stdout, result.stdout
    assert set(objects(manifest.read_text())) == {
        "Secret",
        "Service",
        "Deployment",
        "PodDisruptionBudget",
        "ScaledObject",
        "ServiceMonitor",
    }


@pytest.mark.parametrize(
    ("kind", "path"),
    [
        ("ScaledObject", ["spec", "triggers", 0, "metadata"]),  # free-form map: allowed
        ("ScaledObject", ["spec"]),
        ("Deployment", ["spec", "template", "spec", "containers", 0, "securityContext"]),
        ("ServiceMonitor", ["spec", "endpoints", 0]),
    ],
)
def test_offline_validation_catches_an_unknown_field(
    tools: KubernetesTools, tmp_path: Path, kind: str, path: list
) -> None:
    """The schemas are strict: a misspelt field fails, it is not silently accepted. (The
    trigger's metadata is a free map of strings in KEDA's CRD, so any key passes there.)"""
    docs = [doc for doc in yaml.safe_load_all(render(tools, *ALL_OBJECTS).stdout) if doc]
    target = next(doc for doc in docs if doc["kind"] == kind)
    node = target
    for step in path:
        node = node[step]
    node["misspeltField"] = "1"
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))
    result = kubeconform(tools, manifest)
    if path[-1] == "metadata":
        assert result.returncode == 0, result.stdout
    else:
        assert result.returncode != 0
        assert "misspeltField" in result.stdout, result.stdout


def test_deployment_runs_as_the_service_expects(tools: KubernetesTools) -> None:
    deployment = objects(render(tools, *ALL_OBJECTS).stdout)["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {item["name"]: item for item in container["env"]}

    assert pod["enableServiceLinks"] is False
    assert pod["terminationGracePeriodSeconds"] > DEFAULT_SHUTDOWN_DEADLINE_SECONDS
    assert env["LOYALTY_SHUTDOWN_DEADLINE_SECONDS"]["value"] == "25"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["resources"]["requests"] and container["resources"]["limits"]
    # Writable /tmp only (an emptyDir), under a read-only root.
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]

    # The member name is the pod's own name; the guarantee a value, at-least-once unless set.
    assert env["LOYALTY_MEMBER_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["LOYALTY_PROCESSING_GUARANTEE"]["value"] == "at-least-once"

    # Secrets come as files from the Secret, never as values in the environment.
    secret = volumes[mounts["/var/run/secrets/loyalty"]]["secret"]["secretName"]
    assert secret == objects(render(tools, *ALL_OBJECTS).stdout)["Secret"]["metadata"]["name"]
    assert env["MAGE_LOYALTY_WEBHOOK_SECRET_FILE"]["value"] == (
        "/var/run/secrets/loyalty/mage_loyalty_webhook_secret"
    )
    assert env["RIVO_WEBHOOK_SECRET_FILE"]["value"] == (
        "/var/run/secrets/loyalty/rivo_webhook_secret"
    )
    assert "MAGE_LOYALTY_WEBHOOK_SECRET" not in env and "RIVO_WEBHOOK_SECRET" not in env
    # KEDA owns the replica count.
    assert "replicas" not in deployment["spec"]
    # No surge pod: with a member per partition it would idle, unready, and stall a rollout.
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0


def test_metrics_service_includes_pods_that_are_not_ready(tools: KubernetesTools) -> None:
    rendered = objects(render(tools).stdout)
    service = rendered["Service"]
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert (
        service["spec"]["selector"] == (rendered["Deployment"]["spec"]["selector"]["matchLabels"])
    )
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == "metrics" and port["port"] == 9400


def test_exactly_once_is_a_value(tools: KubernetesTools) -> None:
    rendered = render(tools, "--set", "processingGuarantee=exactly-once").stdout
    (container,) = objects(rendered)["Deployment"]["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item for item in container["env"]}
    assert env["LOYALTY_PROCESSING_GUARANTEE"]["value"] == "exactly-once"
    refused = render(tools, "--set", "processingGuarantee=twice", check=False)
    assert refused.returncode != 0 and "processingGuarantee" in refused.stderr


def test_scaled_object_follows_the_group_lag_on_the_raw_topic(tools: KubernetesTools) -> None:
    rendered = render(
        tools,
        "--set",
        "kafka.groupId=orders-group",
        "--set",
        "kafka.rawTopic=orders.raw",
        "--set",
        "autoscaling.lagThreshold=250",
    ).stdout
    rendered_objects = objects(rendered)
    scaled = rendered_objects["ScaledObject"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == "orders-group"
    assert trigger["metadata"]["topic"] == "orders.raw"
    assert trigger["metadata"]["lagThreshold"] == "250"
    assert trigger["metadata"]["allowIdleConsumers"] == "false"
    assert (
        scaled["spec"]["scaleTargetRef"]["name"]
        == (rendered_objects["Deployment"]["metadata"]["name"])
    )
    (container,) = rendered_objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["LOYALTY_GROUP_ID"] == "orders-group"
    assert env["LOYALTY_RAW_TOPIC"] == "orders.raw"


def test_max_replicas_never_exceed_the_raw_topic_partitions(tools: KubernetesTools) -> None:
    at_limit = render(
        tools, "--set", "kafka.rawTopicPartitions=12", "--set", "autoscaling.maxReplicaCount=12"
    )
    assert objects(at_limit.stdout)["ScaledObject"]["spec"]["maxReplicaCount"] == 12
    refused = render(
        tools,
        "--set",
        "kafka.rawTopicPartitions=6",
        "--set",
        "autoscaling.maxReplicaCount=7",
        check=False,
    )
    assert refused.returncode != 0
    assert "maxReplicaCount must not exceed kafka.rawTopicPartitions" in refused.stderr


def test_grace_period_must_cover_the_shutdown_deadline(tools: KubernetesTools) -> None:
    refused = render(
        tools,
        "--set",
        "shutdownDeadlineSeconds=30",
        "--set",
        "terminationGracePeriodSeconds=30",
        check=False,
    )
    assert refused.returncode != 0
    assert "terminationGracePeriodSeconds must be above" in refused.stderr


def test_without_autoscaling_the_deployment_has_replicas(tools: KubernetesTools) -> None:
    rendered = objects(
        render(tools, "--set", "autoscaling.enabled=false", "--set", "replicaCount=3").stdout
    )
    assert "ScaledObject" not in rendered
    assert rendered["Deployment"]["spec"]["replicas"] == 3
