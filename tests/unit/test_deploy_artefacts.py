"""The alert rules and the dashboard query only metrics the service exposes, and every
schema field is documented."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest
from prometheus_client import generate_latest

from consumer.metrics import Metrics
from consumer.schemas import load_schema

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
