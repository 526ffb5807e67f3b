"""The service over SASL_SSL (SCRAM-SHA-512, host-name verification on) with
least-privilege ACLs; and the ways that goes wrong (a wrong password, an untrusted CA, a
missing ACL) end the service promptly, with one log line naming the cause, exit status 1,
no commit past what was delivered and no credential in the output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, KafkaError, Producer

from consumer.dev.local_broker import free_ports
from consumer.dev.samples import LOCAL_SECRETS
from tests.helpers import processes
from tests.integration.secured_broker import (
    SecuredBroker,
    service_acls,
    start_secured_broker,
)
from tests.integration.service_harness import (
    committed_offsets,
    produce_all,
    read_all,
    wait_until,
)
from tests.integration.test_service import rivo_redemptions

SERVICE_USER = "loyalty-consumer"
NO_DEAD_LETTER_USER = "loyalty-consumer-without-dlq"
# A hang shows as a failure after this; the service normally ends within seconds.
EXIT_WAIT_SECONDS = 60
NOT_COMMITTED = -1001  # librdkafka's OFFSET_INVALID: the group never committed


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredBroker]:
    workdir = tmp_path_factory.mktemp("secured-broker")
    broker = start_secured_broker(workdir, SERVICE_USER, NO_DEAD_LETTER_USER)
    try:
        yield broker
    finally:
        broker.broker.stop()


@dataclass
class Pipeline:
    raw: str
    clean: str
    dlq: str
    group: str


def provision(secured: SecuredBroker, user: str, without: tuple[str, ...] = ()) -> Pipeline:
    name = f"sec-{uuid.uuid4().hex[:10]}"
    topics = Pipeline(f"{name}-raw", f"{name}-clean", f"{name}-dlq", f"{name}-group")
    secured.create_topics([topics.raw, topics.clean, topics.dlq])
    secured.grant(
        service_acls(
            secured.users[user],
            raw_topic=topics.raw,
            clean_topic=topics.clean,
            dead_letter_topic=topics.dlq,
            group_id=topics.group,
            without=without,
        )
    )
    return topics


@dataclass
class ServiceProcess:
    process: subprocess.Popen
    output: Path
    metrics_port: int

    def metrics_text(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read().decode()

    def lines(self) -> list[dict]:
        parsed = []
        for line in self.output.read_text(errors="replace").splitlines():
            try:
                parsed.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                parsed.append({"unparsed": line})
        return parsed

    def stop_lines(self) -> list[dict]:
        return [line for line in self.lines() if line.get("message") == "service stopped"]


def start_service(
    secured: SecuredBroker, topics: Pipeline, client_env: dict[str, str], tmp_path: Path
) -> ServiceProcess:
    (metrics_port,) = free_ports(1)
    env = {
        **os.environ,
        **client_env,
        "LOYALTY_RAW_TOPIC": topics.raw,
        "LOYALTY_CLEAN_TOPIC": topics.clean,
        "LOYALTY_DLQ_TOPIC": topics.dlq,
        "LOYALTY_GROUP_ID": topics.group,
        "LOYALTY_METRICS_PORT": str(metrics_port),
        "LOYALTY_POLL_TIMEOUT_SECONDS": "0.2",
        "RIVO_WEBHOOK_SECRET": LOCAL_SECRETS["rivo"],
        # Commit soon after storing, so "everything committed" is quick to observe.
        "KAFKA_CONSUMER_AUTO_COMMIT_INTERVAL_MS": "200",
    }
    env.pop("KAFKA_SASL_PASSWORD", None)
    output = tmp_path / f"service-{topics.raw}.log"
    with open(output, "wb") as sink:
        process = processes.start(
            [sys.executable, "-m", "consumer", "run"],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return ServiceProcess(process, output, metrics_port)


def wait_for_exit(service: ServiceProcess) -> int:
    try:
        return service.process.wait(EXIT_WAIT_SECONDS)
    except subprocess.TimeoutExpired:
        processes.kill(service.process)
        raise AssertionError(
            "the service hung instead of stopping:\n" + service.output.read_text()[-4000:]
        ) from None


def assert_no_credential(secured: SecuredBroker, service: ServiceProcess, *extra: str) -> None:
    text = service.output.read_text(errors="replace")
    for secret in (*(user.password for user in secured.users.values()), *extra):
        assert secret not in text
    assert LOCAL_SECRETS["rivo"] not in text


def bad_record() -> tuple[bytes, list]:
    return b"{not json", [("content-type", b"application/json")]


def test_the_service_runs_end_to_end_over_sasl_ssl_with_least_privilege(secured, tmp_path):
    topics = provision(secured, SERVICE_USER)
    good = list(rivo_redemptions(20))
    produce_all(secured.plaintext, topics.raw, [*good[:10], bad_record(), *good[10:]])
    service = start_service(
        secured, topics, secured.client_settings(secured.users[SERVICE_USER]), tmp_path
    )
    try:
        wait_until(
            lambda: committed_offsets(secured.plaintext, topics.group, topics.raw, 1)[0] == 21,
            "every raw record to be committed",
        )
        metrics = service.metrics_text()
        assert f'loyalty_records_consumed_total{{topic="{topics.raw}"}} 21.0' in metrics
        assert secured.users[SERVICE_USER].password not in metrics
        assert LOCAL_SECRETS["rivo"] not in metrics
    finally:
        service.process.send_signal(signal.SIGTERM)
        status = wait_for_exit(service)
    assert status == 0, service.output.read_text()[-4000:]
    assert len(read_all(secured.plaintext, topics.clean, 20)) == 20
    dead = read_all(secured.plaintext, topics.dlq, 1)
    assert [dict(m.headers())["loyalty.error.reason"] for m in dead] == [b"invalid_json"]
    assert service.stop_lines() == []
    assert_no_credential(secured, service)


def test_the_service_principal_may_do_nothing_else(secured):
    topics = provision(secured, SERVICE_USER)
    hidden = f"sec-hidden-{uuid.uuid4().hex[:8]}"
    secured.create_topics([hidden])
    user = secured.users[SERVICE_USER]
    client = {
        key.removeprefix("KAFKA_").lower().replace("_", "."): value
        for key, value in secured.client_settings(user).items()
        if key != "KAFKA_SASL_PASSWORD_FILE"
    } | {"sasl.password": user.password}

    # Write the raw topic (the webhook receiver's job): refused.
    failures: list[KafkaError] = []
    producer = Producer({**client, "enable.idempotence": False})
    producer.produce(topics.raw, b"x", on_delivery=lambda error, _msg: failures.append(error))
    producer.flush(30)
    assert [error.code() for error in failures] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]

    # Read the clean topic, or from a group of another name: refused.
    for topic, group in ((topics.clean, topics.group), (topics.raw, f"{topics.group}-other")):
        consumer = Consumer({**client, "group.id": group, "auto.offset.reset": "earliest"})
        consumer.subscribe([topic])
        try:
            error = None
            for _ in range(40):
                message = consumer.poll(0.5)
                if message is not None and message.error() is not None:
                    error = message.error()
                    break
            assert error is not None, f"reading {topic} in group {group} was not refused"
            assert error.code() in (
                KafkaError.TOPIC_AUTHORIZATION_FAILED,
                KafkaError.GROUP_AUTHORIZATION_FAILED,
            )
        finally:
            consumer.close()

    # A topic with no ACL for the principal is not even visible to it.
    visible = Producer(client).list_topics(timeout=10).topics
    assert hidden not in visible
    assert {topics.raw, topics.clean, topics.dlq} <= set(visible)


def test_the_broker_host_name_is_verified(secured):
    """The certificate names 127.0.0.1, not localhost: the same broker reached as
    localhost must be refused, which shows host-name verification is on."""
    user = secured.users[SERVICE_USER]
    errors: list[KafkaError] = []
    client = {
        "bootstrap.servers": secured.secured.replace("127.0.0.1", "localhost"),
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": user.name,
        "sasl.password": user.password,
        "ssl.ca.location": str(secured.trusted_ca.pem_path),
        "ssl.endpoint.identification.algorithm": "https",
        "error_cb": errors.append,
        "log_level": 0,
    }
    producer = Producer(client)
    wait_until(
        lambda: producer.poll(0.2) is not None and any(e.code() == KafkaError._SSL for e in errors),
        "the TLS handshake to be refused",
        timeout=30,
    )
    assert any("certificate verify failed" in error.str() for error in errors)


@pytest.mark.parametrize(
    ("case", "cause"),
    [
        ("wrong_password", "Authentication failed"),
        ("untrusted_ca", "certificate verify failed"),
    ],
)
def test_a_connection_refused_ends_the_service_naming_the_cause(secured, tmp_path, case, cause):
    topics = provision(secured, SERVICE_USER)
    produce_all(secured.plaintext, topics.raw, rivo_redemptions(5))
    user = secured.users[SERVICE_USER]
    wrong_password = "not-" + user.password
    env = (
        secured.client_settings(user, password=wrong_password)
        if case == "wrong_password"
        else secured.client_settings(user, ca=secured.untrusted_ca.pem_path)
    )
    service = start_service(secured, topics, env, tmp_path)

    status = wait_for_exit(service)

    assert status == 1
    stops = service.stop_lines()
    assert len(stops) == 1, service.output.read_text()[-4000:]
    assert stops[0]["level"] == "ERROR"
    assert cause in stops[0]["error"]
    assert committed_offsets(secured.plaintext, topics.group, topics.raw, 1) == {0: NOT_COMMITTED}
    assert_no_credential(secured, service, wrong_password)


def test_a_missing_acl_on_the_dead_letter_topic_ends_the_service_before_committing_past_it(
    secured, tmp_path
):
    topics = provision(secured, NO_DEAD_LETTER_USER, without=("dead_letter_write",))
    good = list(rivo_redemptions(8))
    # One partition: offsets 0-4 good, 5 rejected, 6-8 good.
    produce_all(secured.plaintext, topics.raw, [*good[:5], bad_record(), *good[5:]])
    service = start_service(
        secured, topics, secured.client_settings(secured.users[NO_DEAD_LETTER_USER]), tmp_path
    )

    status = wait_for_exit(service)

    assert status == 1
    stops = service.stop_lines()
    assert len(stops) == 1, service.output.read_text()[-4000:]
    assert "Topic authorization failed" in stops[0]["error"]
    assert topics.dlq in stops[0]["error"]
    committed = committed_offsets(secured.plaintext, topics.group, topics.raw, 1)[0]
    # Never past the record whose dead letter was refused; and every committed record's
    # output is on the clean topic.
    assert committed <= 5
    assert len(read_all(secured.plaintext, topics.clean, max(committed, 0), timeout=5)) >= committed
    assert read_all(secured.plaintext, topics.dlq, 0, timeout=3) == []
    assert_no_credential(secured, service)
