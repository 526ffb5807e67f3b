"""A schema registry that is down at start-up is waited for, not crashed on: the
service (`loyalty-consumer run`, a real process) reports it on /readyz and in
loyalty_schema_registry_waiting, keeps retrying with back-off, and once the registry
(Apicurio, on the port it was told) comes up registers the clean schema and processes
the backlog. The loop never calls the registry afterwards: the records carry the id
registered at start-up."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from confluent_kafka.schema_registry import SchemaRegistryClient

from consumer.dev.local_broker import free_ports
from consumer.dev.samples import LOCAL_SECRETS, sample_webhooks
from tests.integration.schema_registry import CCOMPAT_PATH, LocalSchemaRegistry
from tests.integration.service_harness import read_all, wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
FEED_SCRIPT = REPO_ROOT / "deploy" / "compose" / "feed_samples.py"
# The first retries come after 1, 2 and 4 s: by then several attempts have failed.
SEEN_WAITING_AFTER_SECONDS = 8.0


def probe(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError as error:
        return 0, str(error)


def gauge(port: int, name: str) -> float | None:
    _, text = probe(port, "/metrics")
    for line in text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    return None


def test_a_registry_that_is_down_at_start_up_is_waited_for(
    kafka_bootstrap_servers: str, new_topic: Callable[..., str], group_id: str, tmp_path: Path
) -> None:
    raw, clean, dead = new_topic("raw", 1), new_topic("clean"), new_topic("dlq")
    registry_port, metrics_port = free_ports(2)
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap_servers,
        "LOYALTY_RAW_TOPIC": raw,
        "LOYALTY_CLEAN_TOPIC": clean,
        "LOYALTY_DLQ_TOPIC": dead,
        "LOYALTY_GROUP_ID": group_id,
        "LOYALTY_METRICS_PORT": str(metrics_port),
        "LOYALTY_RAW_TOPIC_PARTITIONS": "1",
        "SCHEMA_REGISTRY_URL": f"http://127.0.0.1:{registry_port}{CCOMPAT_PATH}",
        **{f"{name.upper()}_WEBHOOK_SECRET": secret for name, secret in LOCAL_SECRETS.items()},
    }
    fed = subprocess.run(
        [sys.executable, str(FEED_SCRIPT)], env=env, capture_output=True, text=True, timeout=120
    )
    assert fed.returncode == 0, fed.stdout + fed.stderr
    accepted = sum(1 for sample in sample_webhooks() if sample.expected == "accepted")

    log_path = tmp_path / "service.log"
    with log_path.open("w") as log:
        service = subprocess.Popen(
            [str(BIN / "loyalty-consumer"), "run"], env=env, stdout=log, stderr=log
        )
    try:
        wait_until(lambda: probe(metrics_port, "/readyz")[0] != 0, "the probe server")
        time.sleep(SEEN_WAITING_AFTER_SECONDS)
        status, body = probe(metrics_port, "/readyz")
        assert status == 503 and "schema registry" in body, (status, body)
        assert probe(metrics_port, "/healthz")[0] == 200  # waiting is not stuck
        assert gauge(metrics_port, "loyalty_schema_registry_waiting") == 1
        assert service.poll() is None, log_path.read_text()[-3000:]
        # Nothing was consumed meanwhile: the loop has not started.
        assert read_all(kafka_bootstrap_servers, clean, 0, timeout=2) == []

        with LocalSchemaRegistry(port=registry_port) as registry:
            wait_until(
                lambda: gauge(metrics_port, "loyalty_schema_registry_waiting") == 0,
                "the schema registered",
            )
            messages = read_all(kafka_bootstrap_servers, clean, accepted)
            assert len(messages) == accepted
            registered = SchemaRegistryClient({"url": registry.url}).get_latest_version(
                f"{clean}-value"
            )
            for message in messages:
                magic, schema_id = struct.unpack(">bI", message.value()[:5])
                assert (magic, schema_id) == (0, registered.schema_id)
        service.terminate()
        assert service.wait(60) == 0, log_path.read_text()[-3000:]
    finally:
        if service.poll() is None:
            service.kill()
            service.wait()
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line[:1] == "{"]
    waits = [line for line in lines if line["message"] == "cannot reach the schema registry"]
    assert waits and waits[0]["variable"] == "SCHEMA_REGISTRY_URL"
    assert any(line["message"] == "schema registered" for line in lines)
