"""The alert rules and the dashboard query only metrics the service exposes, and every
schema field is documented."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import jsonschema
import orjson
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from prometheus_client import generate_latest

from consumer.metrics import Metrics
from consumer.providers import PROVIDER_NAMES
from consumer.schemas import load_schema
from tests.helpers.deploy_scripts import public_source_url

ROOT = Path(__file__).resolve().parents[2]


# Enough of a librdkafka statistics snapshot for every derived metric to be exposed.
STATS = {
    "type": "consumer",
    "msg_cnt": 0,
    "brokers": {
        "b/1": {
            "nodeid": 1,
            "name": "b/1",
            "state": "UP",
            "txerrs": 0,
            "rxerrs": 0,
            "rtt": {"cnt": 1, "avg": 900},
        },
    },
    "topics": {
        "raw": {
            "partitions": {
                "0": {
                    "desired": True,
                    "fetch_state": "active",
                    "hi_offset": 9,
                    "lo_offset": 0,
                    "committed_offset": 4,
                    "consumer_lag": 5,
                }
            }
        }
    },
}


def exposed_names() -> set[str]:
    metrics = Metrics()
    metrics.kafka_stats.update(orjson.dumps(STATS).decode())
    metrics.kafka_stats.update(orjson.dumps({**STATS, "type": "producer"}).decode())
    text = generate_latest(metrics.registry).decode()
    return set(re.findall(r"^# TYPE (\w+) ", text, re.MULTILINE))


def referenced_names(text: str) -> set[str]:
    names = set(re.findall(r"\bloyalty_\w+", text))
    # Histogram series are queried by their _bucket/_sum/_count series.
    return {re.sub(r"_(bucket|sum|count)$", "", name) for name in names}


@pytest.mark.parametrize(
    "path",
    [
        "deploy/prometheus/alerts.yml",
        "deploy/prometheus/alerts_test.yml",
        "deploy/grafana/loyalty-consumer.json",
    ],
)
def test_monitoring_files_name_only_exposed_metrics(path):
    referenced = referenced_names((ROOT / path).read_text())
    assert referenced, f"{path} queries no loyalty_ metric"
    assert referenced <= exposed_names(), referenced - exposed_names()


SCHEMA_FILES = sorted(
    str(p.relative_to(ROOT / "schemas")) for p in (ROOT / "schemas").rglob("*.avsc")
)


@pytest.mark.parametrize("schema_file", SCHEMA_FILES)
def test_every_schema_field_has_a_doc(schema_file):
    undocumented = []

    def walk(schema, path):
        if isinstance(schema, list):
            for branch in schema:
                walk(branch, path)
        elif isinstance(schema, dict) and schema.get("type") == "record":
            for field in schema["fields"]:
                if not field.get("doc"):
                    undocumented.append(f"{path}{field['name']}")
                walk(field["type"], f"{path}{field['name']}.")

    walk(orjson.loads((ROOT / "schemas" / schema_file).read_bytes()), "")
    load_schema(schema_file)  # and it parses
    assert undocumented == []


# --- Deployment artefacts that must agree with the package ----------------------------

CHART = ROOT / "deploy" / "helm" / "loyalty-consumer"
REQUIREMENTS = ROOT / "requirements"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
LOCK_LINE = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)(?:\s*;\s*([^\\]+?))?\s*\\?$")


def test_chart_app_version_is_the_package_version():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == PYPROJECT["project"]["version"]


def test_chart_providers_are_the_registered_providers():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert tuple(values["providers"]) == PROVIDER_NAMES


def test_values_schema_accepts_the_defaults_and_refuses_unknown_keys():
    schema = orjson.loads((CHART / "values.schema.json").read_bytes())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.validate(values, schema)
    misspelt = {**values, "autoscaling": {**values["autoscaling"], "maxReplicas": 3}}
    with pytest.raises(jsonschema.ValidationError, match="maxReplicas"):
        jsonschema.validate(misspelt, schema)


def locked(name: str) -> dict[str, tuple[str, str | None]]:
    """name -> (version, marker) of a lock file, every entry with at least one hash."""
    text = (REQUIREMENTS / name).read_text()
    entries = {}
    for block in re.split(r"\n(?=\S)", text):
        first = block.splitlines()[0]
        if first.startswith("#") or not first.strip():
            continue
        match = LOCK_LINE.match(first)
        assert match, first
        assert "--hash=sha256:" in block, f"{name}: {match[1]} has no hash"
        entries[canonicalize_name(match[1])] = (match[2], match[3])
    return entries


@pytest.mark.parametrize(
    ("lock", "requirements"),
    [
        ("runtime.lock", PYPROJECT["project"]["dependencies"]),
        ("build.lock", PYPROJECT["build-system"]["requires"]),
        (
            "test.lock",
            [
                *PYPROJECT["project"]["dependencies"],
                *PYPROJECT["project"]["optional-dependencies"]["test"],
                *PYPROJECT["build-system"]["requires"],
            ],
        ),
    ],
)
def test_lock_files_pin_every_requirement_within_its_bounds(lock, requirements):
    """`make lock` after a change of pyproject.toml keeps this true; a stale lock fails."""
    entries = locked(lock)
    for line in requirements:
        requirement = Requirement(line)
        version, _marker = entries[canonicalize_name(requirement.name)]
        assert requirement.specifier.contains(version, prereleases=True), (line, version)


def test_tests_run_the_versions_the_image_ships():
    test = locked("test.lock")
    for name, (version, _) in locked("runtime.lock").items():
        assert test[name][0] == version, name


def test_the_official_base_is_pinned_by_digest():
    dockerfile = (ROOT / "deploy" / "container" / "Dockerfile").read_text()
    (base,) = re.findall(r"^ARG BASE_IMAGE=(\S+)$", dockerfile, re.MULTILINE)
    assert re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", base), base
    assert "--require-hashes" in dockerfile and "upgrade pip" not in dockerfile


@pytest.mark.parametrize(
    ("remote", "label"),
    [
        (
            "https://user:ghp_secret@example.org/shop/loyalty.git",
            "https://example.org/shop/loyalty.git",
        ),
        (
            "https://oauth2:tok@example.org:8443/shop/loyalty?private_token=x#frag",
            "https://example.org:8443/shop/loyalty",
        ),
        ("git@example.org:shop/loyalty.git", "ssh://example.org/shop/loyalty.git"),
        ("ssh://git:pw@example.org/shop/loyalty.git", "ssh://example.org/shop/loyalty.git"),
        ("/home/someone/src/loyalty", "unknown"),
        ("file:///home/someone/src/loyalty", "unknown"),
        ("", "unknown"),
    ],
)
def test_image_source_label_never_carries_credentials(remote, label):
    assert public_source_url(remote) == label
