"""Monitoring as the chart ships it: the alert rules reach Prometheus as a PrometheusRule
made from deploy/prometheus/alerts.yml itself, and they fire on the series that the
chart's ServiceMonitor produces, whatever the release is called.

The Prometheus operator turns a ServiceMonitor endpoint into a scrape job whose targets
carry namespace, service, pod, container, endpoint and instance labels, and a `job`
label that is the Service's name (or the value of the Service label named by
`jobLabel`), after which the endpoint's own relabelings apply. `operator_target_labels`
reproduces that for the rendered objects; promtool then evaluates the shipped rules
against series with exactly those labels (`promtool test rules`)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from consumer.providers import PROVIDER_NAMES
from tests.integration.deploy_tools import REPO_ROOT, KubernetesTools, kubernetes_tools, run_tool
from tests.integration.test_helm_chart import render

ALERTS = REPO_ROOT / "deploy" / "prometheus" / "alerts.yml"
MONITORING = (
    *(
        arg
        for provider in PROVIDER_NAMES
        for arg in ("--set", f"webhookSecrets.{provider}.value=s")
    ),
    "--set",
    "serviceMonitor.enabled=true",
    "--set",
    "prometheusRule.enabled=true",
)
# Two release names: one holding the chart's name (the release name is the full name),
# one not (<release>-loyalty-consumer).
RELEASES = ("loyalty-consumer-prod", "orders")
POD_ADDRESS = "10.1.2.3"


@pytest.fixture(scope="module")
def tools() -> KubernetesTools:
    return kubernetes_tools()


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    assert found, (
        "promtool is not on PATH: make prometheus (deploy/prometheus/ensure-prometheus.sh)"
    )
    return found


def rendered_objects(tools: KubernetesTools, release: str) -> dict[str, dict]:
    manifest = render(tools, *MONITORING, release=release).stdout
    return {doc["kind"]: doc for doc in yaml.safe_load_all(manifest) if doc}


def relabel(labels: dict[str, str], rules: list[dict]) -> dict[str, str]:
    """Prometheus relabelling for the actions a ServiceMonitor may use here."""
    labels = dict(labels)
    for rule in rules:
        action = rule.get("action", "replace").lower()
        value = rule.get("separator", ";").join(
            labels.get(n, "") for n in rule.get("sourceLabels", [])
        )
        match = re.fullmatch(rule.get("regex", "(.*)"), value)
        if action == "replace":
            if match:
                replacement = rule.get("replacement", "$1")
                target = match.expand(re.sub(r"\$\{?(\d+)\}?", r"\\g<\1>", replacement))
                if target:
                    labels[rule["targetLabel"]] = target
                else:
                    labels.pop(rule["targetLabel"], None)
        elif action in ("keep", "drop"):
            if (match is None) == (action == "keep"):
                return {}  # the target is dropped
        else:
            raise NotImplementedError(f"relabel action {action}")
    return labels


def operator_target_labels(objects: dict[str, dict], namespace: str) -> dict[str, str]:
    service, monitor = objects["Service"], objects["ServiceMonitor"]
    (workload_kind,) = {"Deployment", "StatefulSet"} & set(objects)
    workload = objects[workload_kind]
    # The ServiceMonitor must select the Service, on a port the Service has.
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    (port,) = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
    job_label = monitor["spec"].get("jobLabel")
    labels = {
        "namespace": namespace,
        "service": service["metadata"]["name"],
        "pod": f"{workload['metadata']['name']}-0",
        "container": workload["spec"]["template"]["spec"]["containers"][0]["name"],
        "endpoint": endpoint["port"],
        "instance": f"{POD_ADDRESS}:{port['port']}",
        "job": service["metadata"]["labels"][job_label]
        if job_label
        else service["metadata"]["name"],
    }
    return relabel(labels, endpoint.get("relabelings", []))


def series(name: str, labels: dict[str, str]) -> str:
    return name + "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def promtool_test(rules: dict, labels: dict[str, str]) -> dict:
    """Scenarios every shipped alert keyed on the scrape job must get right."""
    return {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "name": "the scrape fails: down fires for this target, absent does not",
                "interval": "1m",
                "input_series": [{"series": series("up", labels), "values": "1 1 0x10"}],
                "alert_rule_test": [
                    {"eval_time": "1m", "alertname": "LoyaltyConsumerDown", "exp_alerts": []},
                    {
                        "eval_time": "8m",
                        "alertname": "LoyaltyConsumerDown",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    **labels,
                                    "severity": "critical",
                                    "cause": "scrape_failing",
                                }
                            }
                        ],
                    },
                ],
            },
            {
                "name": "every target healthy: no down alert of either kind",
                "interval": "1m",
                "input_series": [{"series": series("up", labels), "values": "1x20"}],
                "alert_rule_test": [
                    {"eval_time": "15m", "alertname": "LoyaltyConsumerDown", "exp_alerts": []}
                ],
            },
            {
                "name": "lag grows: the group-level alert fires under the job",
                "interval": "1m",
                "input_series": [
                    {
                        "series": series(
                            "loyalty_consumer_lag_records",
                            {**labels, "topic": "loyalty.webhooks.raw", "partition": "0"},
                        ),
                        "values": "2000+100x40",
                    },
                    {"series": series("up", labels), "values": "1x40"},
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "30m",
                        "alertname": "LoyaltyConsumerLagGrowing",
                        "exp_alerts": [
                            {"exp_labels": {"job": labels["job"], "severity": "warning"}}
                        ],
                    }
                ],
            },
        ],
    }


def run_promtool(promtool: str, directory: Path, rules: dict, labels: dict[str, str]):
    directory.mkdir()
    (directory / "rules.yml").write_text(yaml.safe_dump(rules))
    (directory / "test.yml").write_text(yaml.safe_dump(promtool_test(rules, labels)))
    return run_tool(promtool, "test", "rules", directory / "test.yml", check=False)


def without_annotations(spec: dict) -> dict:
    """The rules as shipped, annotations left out: promtool compares the annotations of
    every firing alert, and what is under test here is which alerts fire, with what labels."""
    return {
        "groups": [
            {
                **group,
                "rules": [
                    {key: value for key, value in rule.items() if key != "annotations"}
                    for rule in group["rules"]
                ],
            }
            for group in spec["groups"]
        ]
    }


def test_prometheus_rule_is_alerts_yml(tools: KubernetesTools) -> None:
    """Made from alerts.yml when rendered (files/alerts.yml links to it), never a copy."""
    link = REPO_ROOT / "deploy" / "helm" / "loyalty-consumer" / "files" / "alerts.yml"
    assert link.is_symlink() and link.resolve() == ALERTS.resolve()
    shipped = yaml.safe_load(ALERTS.read_text())
    for release in RELEASES:
        rule = rendered_objects(tools, release)["PrometheusRule"]
        assert rule["spec"] == shipped


@pytest.mark.parametrize("release", RELEASES)
def test_alerts_fire_on_the_series_the_service_monitor_produces(
    tools: KubernetesTools, promtool: str, tmp_path: Path, release: str
) -> None:
    namespace = f"ns-{release}"
    objects = rendered_objects(tools, release)
    labels = operator_target_labels(objects, namespace)
    assert labels["service"].startswith(release)  # the Service is named after the release
    rules = without_annotations(objects["PrometheusRule"]["spec"])
    result = run_promtool(promtool, tmp_path / "as-shipped", rules, labels)
    assert result.returncode == 0, result.stdout + result.stderr
    print(f"release {release}: target labels {labels}; promtool: {result.stdout.strip()}")


def test_without_the_job_relabelling_the_alerts_would_miss(
    tools: KubernetesTools, promtool: str, tmp_path: Path
) -> None:
    """The check above can fail: with the operator's default job (the Service's name),
    the down alert never fires for a failing target (and `absent` fires for a healthy one)."""
    objects = rendered_objects(tools, "orders")
    for endpoint in objects["ServiceMonitor"]["spec"]["endpoints"]:
        endpoint.pop("relabelings", None)
    labels = operator_target_labels(objects, "ns-orders")
    assert labels["job"] == "orders-loyalty-consumer"
    rules = without_annotations(objects["PrometheusRule"]["spec"])
    result = run_promtool(promtool, tmp_path / "default-job", rules, labels)
    assert result.returncode != 0
    assert "LoyaltyConsumerDown" in result.stdout + result.stderr
