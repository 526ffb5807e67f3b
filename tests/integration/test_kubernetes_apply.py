"""The chart against a real API server (etcd + kube-apiserver on loopback, see
kube_apiserver.py): KEDA's and the Prometheus operator's CRDs installed, `helm install`
of the chart, and every object the release holds read back from the server. The server
applies its own validation (structural CRD schemas, field validation), which is stricter
than any offline check in places, and nothing is accepted by assumption."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.integration.deploy_tools import CHART, KubernetesTools, kubernetes_tools, run_tool
from tests.integration.kube_apiserver import ApiError, KubeApiServer
from tests.integration.test_helm_chart import ALL_OBJECTS

NAMESPACE = "loyalty"
RELEASE = "orders"
ESTABLISHED_TIMEOUT_SECONDS = 30.0
# Every optional object on, as in production with the Prometheus operator, and
# exactly-once, so the workload is the StatefulSet.
VALUES = (*ALL_OBJECTS, "--set", "processingGuarantee=exactly-once")
# Where each kind lives in the API.
API_PATHS = {
    "Secret": "/api/v1/namespaces/{ns}/secrets/{name}",
    "Service": "/api/v1/namespaces/{ns}/services/{name}",
    "ServiceAccount": "/api/v1/namespaces/{ns}/serviceaccounts/{name}",
    "StatefulSet": "/apis/apps/v1/namespaces/{ns}/statefulsets/{name}",
    "PodDisruptionBudget": "/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets/{name}",
    "NetworkPolicy": "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies/{name}",
    "ScaledObject": "/apis/keda.sh/v1alpha1/namespaces/{ns}/scaledobjects/{name}",
    "TriggerAuthentication": (
        "/apis/keda.sh/v1alpha1/namespaces/{ns}/triggerauthentications/{name}"
    ),
    "ServiceMonitor": "/apis/monitoring.coreos.com/v1/namespaces/{ns}/servicemonitors/{name}",
    "PrometheusRule": "/apis/monitoring.coreos.com/v1/namespaces/{ns}/prometheusrules/{name}",
}


@pytest.fixture(scope="module")
def tools() -> KubernetesTools:
    return kubernetes_tools()


@pytest.fixture(scope="module")
def api_server(tools: KubernetesTools) -> Iterator[KubeApiServer]:
    server = KubeApiServer(tools.kube_apiserver, tools.etcd)
    try:
        server.start()
    except Exception as exc:
        server.stop()
        pytest.fail(f"the local kube-apiserver did not start: {exc}", pytrace=False)
    try:
        for crd_dir in (tools.keda_crds, tools.prometheus_operator_crds):
            for crd_file in sorted(crd_dir.glob("*.yaml")):
                install_crd(server, yaml.safe_load(crd_file.read_text()))
        yield server
    finally:
        server.stop()


def install_crd(server: KubeApiServer, crd: dict) -> None:
    server.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", body=crd)
    path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}"
    deadline = time.monotonic() + ESTABLISHED_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        conditions = (server.request("GET", path).get("status") or {}).get("conditions") or []
        if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
            return
        time.sleep(0.2)
    raise AssertionError(f"CRD {crd['metadata']['name']} not established")


def helm(tools: KubernetesTools, server: KubeApiServer, *args: str, check: bool = True):
    return run_tool(
        tools.helm,
        *args,
        "--kubeconfig",
        server.kubeconfig,
        "--namespace",
        NAMESPACE,
        check=check,
    )


@pytest.fixture(scope="module")
def release(tools: KubernetesTools, api_server: KubeApiServer) -> list[dict]:
    """The objects helm reports as installed, from the release's stored manifest."""
    helm(tools, api_server, "install", RELEASE, str(CHART), "--create-namespace", *VALUES)
    manifest = helm(tools, api_server, "get", "manifest", RELEASE).stdout
    return [doc for doc in yaml.safe_load_all(manifest) if doc]


def test_helm_install_is_accepted_and_deployed(
    tools: KubernetesTools, api_server: KubeApiServer, release: list[dict]
) -> None:
    status = helm(tools, api_server, "status", RELEASE, "--output", "yaml").stdout
    assert yaml.safe_load(status)["info"]["status"] == "deployed"
    assert {doc["kind"] for doc in release} == set(API_PATHS)


def test_every_object_is_stored_as_rendered(api_server: KubeApiServer, release: list[dict]) -> None:
    for doc in release:
        path = API_PATHS[doc["kind"]].format(ns=NAMESPACE, name=doc["metadata"]["name"])
        stored = api_server.request("GET", path)
        assert stored["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        if doc["kind"] == "Secret":
            assert stored["data"] == doc["data"]
        elif doc["kind"] == "ServiceAccount":
            assert stored["automountServiceAccountToken"] is False
        else:
            assert _contains(stored["spec"], doc["spec"]), doc["kind"]


def _contains(stored, rendered) -> bool:
    """Every rendered field is in the stored object (the server adds defaults)."""
    if isinstance(rendered, dict):
        return isinstance(stored, dict) and all(
            key in stored and _contains(stored[key], value) for key, value in rendered.items()
        )
    if isinstance(rendered, list):
        return (
            isinstance(stored, list)
            and len(stored) == len(rendered)
            and all(_contains(s, r) for s, r in zip(stored, rendered, strict=True))
        )
    return stored == rendered or str(stored) == str(rendered)


def test_scaled_object_and_member_name_as_stored(
    api_server: KubeApiServer, release: list[dict]
) -> None:
    name = next(doc for doc in release if doc["kind"] == "ScaledObject")["metadata"]["name"]
    scaled = api_server.request("GET", API_PATHS["ScaledObject"].format(ns=NAMESPACE, name=name))
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == "loyalty-consumer"
    assert trigger["metadata"]["topic"] == "loyalty.webhooks.raw"
    assert scaled["spec"]["scaleTargetRef"]["kind"] == "StatefulSet"
    stateful = api_server.request("GET", API_PATHS["StatefulSet"].format(ns=NAMESPACE, name=name))
    (container,) = stateful["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item for item in container["env"]}
    assert env["LOYALTY_MEMBER_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["LOYALTY_PROCESSING_GUARANTEE"]["value"] == "exactly-once"
    assert env["LOYALTY_STATIC_MEMBERSHIP"]["value"] == "true"
    # The server's own defaults did not turn the PDB policy or the pod policy around.
    pdb = api_server.request(
        "GET", API_PATHS["PodDisruptionBudget"].format(ns=NAMESPACE, name=name)
    )
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    assert stateful["spec"]["podManagementPolicy"] == "Parallel"


def test_server_rejects_an_unknown_scaled_object_field(
    api_server: KubeApiServer, release: list[dict]
) -> None:
    """The CRD's schema is enforced: an unknown field is refused (strict field validation,
    as `kubectl apply` and helm's server-side apply use), not silently dropped."""
    scaled = next(doc for doc in release if doc["kind"] == "ScaledObject")
    bogus = {**scaled, "metadata": {"name": "bogus", "namespace": NAMESPACE}}
    bogus["spec"] = {**scaled["spec"], "maxReplicaCont": 3}
    with pytest.raises(ApiError) as refused:
        api_server.request(
            "POST",
            f"/apis/keda.sh/v1alpha1/namespaces/{NAMESPACE}/scaledobjects?fieldValidation=Strict",
            body=bogus,
        )
    assert refused.value.status == 422 or refused.value.status == 400
    assert "maxReplicaCont" in refused.value.body


def test_upgrade_with_too_many_replicas_is_refused(
    tools: KubernetesTools, api_server: KubeApiServer, release: list[dict], tmp_path: Path
) -> None:
    refused = helm(
        tools,
        api_server,
        "upgrade",
        RELEASE,
        str(CHART),
        *VALUES,
        "--set",
        "autoscaling.maxReplicaCount=7",
        check=False,
    )
    assert refused.returncode != 0
    assert "maxReplicaCount must not exceed" in refused.stderr
