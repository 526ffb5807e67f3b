"""Drives the real service (Runner with real clients, or `loyalty-consumer run` as a
child process) against the test broker."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import MappingProxyType

from confluent_kafka import OFFSET_INVALID, Consumer, Message, Producer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from consumer.config import Settings
from consumer.dev.local_broker import free_ports
from consumer.dev.samples import LOCAL_SECRETS
from consumer.kafka_io import output_limits
from consumer.metrics import Metrics, serve_http
from consumer.records import HeaderList
from consumer.runner import Runner
from consumer.service import build_runner, probes
from tests.helpers import processes

# Generous: a rebalance on a cold broker takes a few seconds; a hang shows as a failure.
RUN_TIMEOUT_SECONDS = 90.0


@dataclass
class ServiceRun:
    runner: Runner
    metrics: Metrics
    thread: threading.Thread
    errors: list[BaseException] = field(default_factory=list)
    http_port: int | None = None
    _server: object | None = None

    def value(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    def outcome_total(self, outcome: str) -> float:
        return sum(
            sample.value
            for metric in self.metrics.registry.collect()
            if metric.name == "loyalty_records_processed"
            for sample in metric.samples
            if sample.name.endswith("_total") and sample.labels["outcome"] == outcome
        )

    def consumed(self) -> float:
        return sum(
            sample.value
            for metric in self.metrics.registry.collect()
            if metric.name == "loyalty_records_consumed"
            for sample in metric.samples
            if sample.name.endswith("_total")
        )

    def stop(self, timeout: float = RUN_TIMEOUT_SECONDS) -> None:
        self.runner.request_stop()
        self.thread.join(timeout)
        if self._server is not None:
            self._server.shutdown()
        assert not self.thread.is_alive(), "the service did not stop"
        if self.errors:
            raise self.errors[0]


def start_service(settings: Settings, serve: bool = False) -> ServiceRun:
    """The service's runner on a thread; with `serve`, also its metrics and probes on a
    free port (`http_port`), exactly as `loyalty-consumer run` serves them."""
    metrics = Metrics()
    runner = build_runner(settings, metrics)
    run = ServiceRun(runner=runner, metrics=metrics, thread=None)  # type: ignore[arg-type]
    if serve:
        live, ready = probes(settings, runner, metrics)
        run._server = serve_http(metrics, 0, live, ready, host="127.0.0.1")
        run.http_port = run._server.server_port

    def target() -> None:
        try:
            # As run_service does: the output topics' limits, read once at start-up.
            runner.run(output_limits(settings, (settings.clean_topic, settings.dead_letter_topic)))
        except BaseException as exc:  # surfaced by stop()
            run.errors.append(exc)

    run.thread = threading.Thread(target=target, name="service", daemon=True)
    run.thread.start()
    return run


def start_service_process(
    bootstrap: str, name: str, output=subprocess.DEVNULL, **env: str
) -> tuple[subprocess.Popen, int]:
    """`loyalty-consumer run` as a child process, reading `{name}-raw` into `{name}-clean`
    and `{name}-dlq` as group `{name}-group`, with every provider's local secret and its
    metrics and probes on a free port (returned). `env` adds or overrides variables;
    `output` takes its stdout and stderr."""
    (port,) = free_ports(1)
    environment = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "LOYALTY_RAW_TOPIC": f"{name}-raw",
        "LOYALTY_CLEAN_TOPIC": f"{name}-clean",
        "LOYALTY_DLQ_TOPIC": f"{name}-dlq",
        "LOYALTY_GROUP_ID": f"{name}-group",
        "LOYALTY_METRICS_PORT": str(port),
        "LOYALTY_METRICS_HOST": "127.0.0.1",
        "RIVO_WEBHOOK_SECRET": LOCAL_SECRETS["rivo"],
        "MAGE_LOYALTY_WEBHOOK_SECRET": LOCAL_SECRETS["mage_loyalty"],
        **env,
    }
    process = processes.start(
        [sys.executable, "-m", "consumer", "run"], env=environment, stdout=output, stderr=output
    )
    return process, port


def scraped_total(port: int, name: str, **labels: str) -> float:
    """The sum of the samples `name` whose labels include `labels`, from the /metrics of
    a service process on `port`."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def wait_until(condition: Callable[[], bool], what: str, timeout: float = RUN_TIMEOUT_SECONDS):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def service_settings(bootstrap: str, raw: str, clean: str, dlq: str, group: str, **kw) -> Settings:
    secrets = kw.pop("secrets", {})
    return Settings(
        bootstrap_servers=bootstrap,
        raw_topic=raw,
        clean_topic=clean,
        dead_letter_topic=dlq,
        group_id=group,
        webhook_secrets=MappingProxyType({k: (v,) for k, v in secrets.items()}),
        poll_timeout_seconds=0.2,
        **kw,
    )


def produce_all(
    bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, HeaderList]]
) -> int:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    count = 0
    for value, headers in records:
        producer.produce(topic, value=value, headers=list(headers))
        count += 1
        if count % 1000 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0, "test input was not fully delivered"
    return count


def read_all(bootstrap: str, topic: str, expected: int, timeout: float = 30.0) -> list[Message]:
    """Every record of `topic` (at least `expected` of them) from the beginning."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{topic}-{time.monotonic_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    messages: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for message in consumer.consume(500, 0.5):
                assert message.error() is None, message.error()
                messages.append(message)
            if len(messages) >= expected and not consumer.consume(500, 1.0):
                break
    finally:
        consumer.close()
    return messages


def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        committed = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], 10)
        return {tp.partition: tp.offset for tp in committed}
    finally:
        consumer.close()


def everything_committed(bootstrap: str, group: str, topic: str, partitions: int) -> bool:
    """True when the group's commit point is the end of every partition that has records
    (a partition that never had one has no commit point, and needs none). Polled in a
    loop, so one client asks both questions instead of one client each."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        committed = {tp.partition: tp.offset for tp in consumer.committed(tps, 10)}
        ends = {tp.partition: consumer.get_watermark_offsets(tp, 10)[1] for tp in tps}
    finally:
        consumer.close()
    return all(committed[p] == end for p, end in ends.items() if end)


def assert_committed_to_the_end(committed: dict[int, int], ends: dict[int, int]) -> None:
    """Every partition that holds records is committed exactly at its end. One that
    never received a record has nothing to commit: no commit point (or one at 0). Which
    partitions stay empty depends on where the records land, so this, not `committed ==
    ends`, is what holds whatever the distribution."""
    assert set(committed) == set(ends), (committed, ends)
    for partition, end in ends.items():
        if end > 0:
            assert committed[partition] == end, (partition, committed, ends)
        else:
            assert committed[partition] in (OFFSET_INVALID, 0), (partition, committed, ends)


def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "end-offsets"})
    try:
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), 10)[1]
            for p in range(partitions)
        }
    finally:
        consumer.close()
