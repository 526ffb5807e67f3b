"""The Helm chart, offline: helm lint --strict, and helm template's output validated by
kubeconform -strict against Kubernetes' schemas and KEDA's and the Prometheus operator's
CRD schemas (no cluster, no download), under several value sets. What the rendered
objects promise is asserted here; that a real API server accepts them is
test_kubernetes_apply.py; that the alerts fire on the series the ServiceMonitor's
scrape produces is test_chart_monitoring.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from consumer.providers import PROVIDER_NAMES
from tests.integration.deploy_tools import CHART, KubernetesTools, kubernetes_tools, run_tool

# A signing secret for every provider the service knows: the chart refuses less.
SECRETS = tuple(
    arg
    for provider in PROVIDER_NAMES
    for arg in ("--set", f"webhookSecrets.{provider}.value={provider}-secret")
)
# Every optional object on, alongside the defaults.
ALL_OBJECTS = (
    *SECRETS,
    "--set",
    "serviceMonitor.enabled=true",
    "--set",
    "prometheusRule.enabled=true",
    "--set",
    "serviceAccount.create=true",
    "--set",
    "networkPolicy.enabled=true",
    "--set",
    "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.name=monitoring",
    "--set",
    "autoscaling.sasl.enabled=true",
    "--set",
    "autoscaling.sasl.secretName=kafka-credentials",
    "--set",
    "autoscaling.sasl.caKey=ca.crt",
)
ALL_KINDS = {
    "Secret",
    "Service",
    "Deployment",
    "PodDisruptionBudget",
    "ScaledObject",
    "TriggerAuthentication",
    "ServiceMonitor",
    "PrometheusRule",
    "NetworkPolicy",
    "ServiceAccount",
}
DEFAULT_SHUTDOWN_DEADLINE_SECONDS = 25  # consumer.config.Settings
# Every extension point at once (docs/deploying.md describes each).
EXTENDED_VALUES = {
    "nameOverride": "redemptions",
    "image": {"repository": "registry.example/loyalty-consumer", "digest": "sha256:" + "ab" * 32},
    "processingGuarantee": "exactly-once",
    "webhookSecrets": {
        PROVIDER_NAMES[0]: {"secretName": "provider-signing", "key": "current"},
    },
    "unsignedProviders": list(PROVIDER_NAMES[1:]),
    "envFrom": [{"secretRef": {"name": "kafka-client"}}],
    "extraEnv": [{"name": "KAFKA_SASL_PASSWORD_FILE", "value": "/var/run/secrets/kafka/password"}],
    "extraVolumes": [{"name": "kafka", "secret": {"secretName": "kafka-credentials"}}],
    "extraVolumeMounts": [
        {"name": "kafka", "mountPath": "/var/run/secrets/kafka", "readOnly": True}
    ],
    "openshift": {"adaptSecurityContext": True},
    "probes": {"readiness": {"periodSeconds": 5, "timeoutSeconds": 1, "failureThreshold": 6}},
    "strategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}},
    "topologySpreadConstraints": [
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
        }
    ],
    "podDisruptionBudget": {"unhealthyPodEvictionPolicy": "IfHealthyBudget"},
    "serviceAccount": {"create": True, "name": "loyalty", "annotations": {"team": "loyalty"}},
}


@pytest.fixture(scope="module")
def tools() -> KubernetesTools:
    return kubernetes_tools()


def render(tools: KubernetesTools, *args: str, check: bool = True, release: str = "orders"):
    return run_tool(
        tools.helm,
        "template",
        release,
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


def values_file(tmp_path: Path, values: dict) -> tuple[str, str]:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return ("--values", str(path))


def workload(rendered: dict[str, dict]) -> dict:
    (kind,) = {"Deployment", "StatefulSet"} & set(rendered)
    return rendered[kind]


def container_env(rendered: dict[str, dict]) -> dict[str, dict]:
    (container,) = workload(rendered)["spec"]["template"]["spec"]["containers"]
    return {item["name"]: item for item in container["env"]}


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


def test_helm_lint_strict(tools: KubernetesTools, tmp_path: Path) -> None:
    run_tool(tools.helm, "lint", "--strict", CHART, *SECRETS)
    run_tool(tools.helm, "lint", "--strict", CHART, *ALL_OBJECTS)
    run_tool(tools.helm, "lint", "--strict", CHART, *values_file(tmp_path, EXTENDED_VALUES))


@pytest.mark.parametrize(
    ("value_set", "expected_kinds"),
    [
        ("all objects", ALL_KINDS),
        (
            "exactly-once",
            {"Secret", "Service", "StatefulSet", "PodDisruptionBudget", "ScaledObject"},
        ),
        (
            "extended",
            {"Service", "StatefulSet", "PodDisruptionBudget", "ScaledObject", "ServiceAccount"},
        ),
        ("no autoscaling, no PDB", {"Secret", "Service", "Deployment"}),
    ],
)
def test_rendered_objects_are_valid_against_offline_schemas(
    tools: KubernetesTools, tmp_path: Path, value_set: str, expected_kinds: set[str]
) -> None:
    args = {
        "all objects": ALL_OBJECTS,
        "exactly-once": (*SECRETS, "--set", "processingGuarantee=exactly-once"),
        "extended": values_file(tmp_path, EXTENDED_VALUES),
        "no autoscaling, no PDB": (
            *SECRETS,
            "--set",
            "autoscaling.enabled=false",
            "--set",
            "podDisruptionBudget.enabled=false",
        ),
    }[value_set]
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(render(tools, *args).stdout)
    result = kubeconform(tools, manifest)
    assert result.returncode == 0, result.stdout + result.stderr
    count = len(expected_kinds)
    assert f"Valid: {count}, Invalid: 0, Errors: 0, Skipped: 0" in result.stdout, result.stdout
    assert set(objects(manifest.read_text())) == expected_kinds


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
    rendered = objects(render(tools, *ALL_OBJECTS).stdout)
    deployment = rendered["Deployment"]
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
    # A Deployment's pod names change, so no static membership.
    assert env["LOYALTY_MEMBER_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["LOYALTY_PROCESSING_GUARANTEE"]["value"] == "at-least-once"
    assert env["LOYALTY_STATIC_MEMBERSHIP"]["value"] == "false"

    # Secrets come as files from the Secret, never as values in the environment: one
    # file per provider, for every provider the service knows.
    sources = volumes[mounts["/var/run/secrets/loyalty"]]["projected"]["sources"]
    secret = rendered["Secret"]
    assert {source["secret"]["name"] for source in sources} == {secret["metadata"]["name"]}
    for provider in PROVIDER_NAMES:
        file = f"{provider}_webhook_secret"
        assert env[f"{provider.upper()}_WEBHOOK_SECRET_FILE"]["value"] == (
            f"/var/run/secrets/loyalty/{file}"
        )
        assert f"{provider.upper()}_WEBHOOK_SECRET" not in env
        assert file in secret["data"]
    assert "LOYALTY_UNSIGNED_PROVIDERS" not in env
    # KEDA owns the replica count.
    assert "replicas" not in deployment["spec"]
    # No surge pod: with a member per partition it would idle, unready, and stall a rollout.
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0


def test_metrics_service_includes_pods_that_are_not_ready(tools: KubernetesTools) -> None:
    rendered = objects(render(tools, *SECRETS).stdout)
    service = rendered["Service"]
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert (
        service["spec"]["selector"] == (rendered["Deployment"]["spec"]["selector"]["matchLabels"])
    )
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == "metrics" and port["port"] == 9400


def test_exactly_once_runs_as_a_stateful_set_with_stable_member_names(
    tools: KubernetesTools,
) -> None:
    """Pod names <fullname>-<ordinal> survive a replacement, so the member name (from the
    pod name) is a stable transactional id: a replaced member fences its predecessor's
    open transaction at once instead of leaving it to time out. KEDA scales it."""
    rendered = objects(render(tools, *SECRETS, "--set", "processingGuarantee=exactly-once").stdout)
    assert "Deployment" not in rendered
    stateful = rendered["StatefulSet"]
    assert stateful["metadata"]["name"] == "orders-loyalty-consumer"
    assert stateful["spec"]["serviceName"] == rendered["Service"]["metadata"]["name"]
    assert stateful["spec"]["podManagementPolicy"] == "Parallel"
    env = container_env(rendered)
    assert env["LOYALTY_PROCESSING_GUARANTEE"]["value"] == "exactly-once"
    assert env["LOYALTY_MEMBER_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["LOYALTY_STATIC_MEMBERSHIP"]["value"] == "true"
    target = rendered["ScaledObject"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("StatefulSet", "orders-loyalty-consumer")
    assert rendered["PodDisruptionBudget"]["spec"]["selector"] == stateful["spec"]["selector"]

    # An explicit kind wins over the default.
    as_deployment = objects(
        render(
            tools,
            *SECRETS,
            "--set",
            "processingGuarantee=exactly-once",
            "--set",
            "workload.kind=Deployment",
        ).stdout
    )
    assert "Deployment" in as_deployment and "StatefulSet" not in as_deployment
    assert container_env(as_deployment)["LOYALTY_STATIC_MEMBERSHIP"]["value"] == "false"

    refused = render(tools, *SECRETS, "--set", "processingGuarantee=twice", check=False)
    assert refused.returncode != 0 and "processingGuarantee" in refused.stderr


def test_every_provider_needs_a_secret_or_an_explicit_opt_out(tools: KubernetesTools) -> None:
    refused = render(tools, check=False)
    assert refused.returncode != 0
    assert f"no signing secret for provider {PROVIDER_NAMES[0]}" in refused.stderr
    # One provider short is refused as well.
    (*others, last) = PROVIDER_NAMES
    partial = tuple(
        arg for provider in others for arg in ("--set", f"webhookSecrets.{provider}.value=s")
    )
    refused = render(tools, *partial, check=False)
    assert refused.returncode != 0 and f"provider {last}" in refused.stderr
    # An empty value is no secret.
    refused = render(tools, *partial, "--set", f"webhookSecrets.{last}.value=", check=False)
    assert refused.returncode != 0 and f"provider {last}" in refused.stderr

    opted_out = objects(render(tools, *partial, "--set", f"unsignedProviders={{{last}}}").stdout)
    env = container_env(opted_out)
    assert env["LOYALTY_UNSIGNED_PROVIDERS"]["value"] == last
    assert f"{last.upper()}_WEBHOOK_SECRET_FILE" not in env

    # A name that is no provider is a typo, not a secret nobody reads.
    refused = render(tools, *SECRETS, "--set", "webhookSecrets.rivvo.value=s", check=False)
    assert refused.returncode != 0 and "rivvo: not a provider" in refused.stderr


def test_values_schema_refuses_unknown_keys(tools: KubernetesTools) -> None:
    for typo, key in (
        ("autoscaling.maxReplicas=3", "maxReplicas"),
        ("serviceMonitor.enable=true", "enable"),
        ("imagee.tag=x", "imagee"),
    ):
        refused = render(tools, *SECRETS, "--set", typo, check=False)
        assert refused.returncode != 0, typo
        # helm's schema libraries word it "additional property(ies) ... not allowed".
        assert "additional propert" in refused.stderr.lower(), refused.stderr
        assert key in refused.stderr, refused.stderr
    refused = render(tools, *SECRETS, "--set", "workload.kind=DaemonSet", check=False)
    assert refused.returncode != 0
    assert "workload" in refused.stderr and "kind" in refused.stderr, refused.stderr


def test_extension_points(tools: KubernetesTools, tmp_path: Path) -> None:
    rendered = objects(render(tools, *values_file(tmp_path, EXTENDED_VALUES)).stdout)
    stateful = rendered["StatefulSet"]
    # nameOverride names the objects and the app label.
    assert stateful["metadata"]["name"] == "orders-redemptions"
    assert stateful["metadata"]["labels"]["app.kubernetes.io/name"] == "redemptions"
    pod = stateful["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "registry.example/loyalty-consumer@sha256:" + "ab" * 32
    assert container["envFrom"] == EXTENDED_VALUES["envFrom"]
    env = container_env(rendered)
    assert env["KAFKA_SASL_PASSWORD_FILE"]["value"] == "/var/run/secrets/kafka/password"
    mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
    assert mounts["/var/run/secrets/kafka"]["name"] == "kafka"
    assert {"name": "kafka", "secret": {"secretName": "kafka-credentials"}} in pod["volumes"]
    # An existing Secret and key for the first provider; the others opted out.
    (projected,) = [volume for volume in pod["volumes"] if "projected" in volume]
    (source,) = projected["projected"]["sources"]
    first = PROVIDER_NAMES[0]
    assert source["secret"] == {
        "name": "provider-signing",
        "items": [{"key": "current", "path": f"{first}_webhook_secret"}],
    }
    assert "Secret" not in rendered  # nothing given as a value, nothing created
    # OpenShift: no fixed user, group or fsGroup; the rest of the hardening stays.
    assert not {"runAsUser", "runAsGroup", "fsGroup"} & set(pod["securityContext"])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["readinessProbe"]["periodSeconds"] == 5
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["periodSeconds"] == 10  # untouched default
    assert stateful["spec"]["updateStrategy"] == EXTENDED_VALUES["strategy"]
    (spread,) = pod["topologySpreadConstraints"]
    assert spread["labelSelector"]["matchLabels"] == stateful["spec"]["selector"]["matchLabels"]
    assert rendered["PodDisruptionBudget"]["spec"]["unhealthyPodEvictionPolicy"] == (
        "IfHealthyBudget"
    )
    assert pod["serviceAccountName"] == "loyalty"
    assert rendered["ServiceAccount"]["metadata"]["name"] == "loyalty"
    assert pod["automountServiceAccountToken"] is False

    # fullnameOverride replaces the whole name.
    renamed = objects(render(tools, *SECRETS, "--set", "fullnameOverride=loyalty").stdout)
    assert renamed["Deployment"]["metadata"]["name"] == "loyalty"
    # Defaults: the package version as the tag, hardening with a fixed non-root user,
    # and unready pods evictable (a broker outage must not block node drains).
    defaults = objects(render(tools, *SECRETS).stdout)
    (container,) = defaults["Deployment"]["spec"]["template"]["spec"]["containers"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert container["image"] == f"loyalty-consumer:{chart['appVersion']}"
    assert defaults["PodDisruptionBudget"]["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_network_policy_admits_only_the_scrape(tools: KubernetesTools) -> None:
    rendered = objects(render(tools, *ALL_OBJECTS).stdout)
    policy = rendered["NetworkPolicy"]["spec"]
    assert policy["podSelector"] == rendered["Deployment"]["spec"]["selector"]
    assert policy["policyTypes"] == ["Ingress"]
    (rule,) = policy["ingress"]
    assert rule["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}]
    # Without a named scraper the policy would admit nobody or everybody: refused.
    refused = render(tools, *SECRETS, "--set", "networkPolicy.enabled=true", check=False)
    assert refused.returncode != 0 and "networkPolicy.metricsFrom" in refused.stderr


def test_keda_authenticates_with_the_sasl_secret(tools: KubernetesTools) -> None:
    rendered = objects(render(tools, *ALL_OBJECTS).stdout)
    (trigger,) = rendered["ScaledObject"]["spec"]["triggers"]
    auth = rendered["TriggerAuthentication"]
    assert trigger["authenticationRef"] == {"name": auth["metadata"]["name"]}
    assert trigger["metadata"]["sasl"] == "scram_sha512"
    assert trigger["metadata"]["tls"] == "enable"
    assert {
        (ref["parameter"], ref["name"], ref["key"]) for ref in auth["spec"]["secretTargetRef"]
    } == {
        ("username", "kafka-credentials", "username"),
        ("password", "kafka-credentials", "password"),
        ("ca", "kafka-credentials", "ca.crt"),
    }


def test_scaled_object_follows_the_group_lag_on_the_raw_topic(tools: KubernetesTools) -> None:
    rendered = render(
        tools,
        *SECRETS,
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
        tools,
        *SECRETS,
        "--set",
        "kafka.rawTopicPartitions=12",
        "--set",
        "autoscaling.maxReplicaCount=12",
    )
    assert objects(at_limit.stdout)["ScaledObject"]["spec"]["maxReplicaCount"] == 12
    refused = render(
        tools,
        *SECRETS,
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
        *SECRETS,
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
        render(
            tools, *SECRETS, "--set", "autoscaling.enabled=false", "--set", "replicaCount=3"
        ).stdout
    )
    assert "ScaledObject" not in rendered
    assert rendered["Deployment"]["spec"]["replicas"] == 3
