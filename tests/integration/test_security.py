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
from consumer.reader import RedemptionReader
from tests.helpers import payloads, processes
from tests.integration.secured_broker import (
    Principal,
    SecuredBroker,
    receiver_acls,
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
RECEIVER_USER = "webhook-receiver"
# Another application on the same cluster, with rights of its own elsewhere.
OTHER_USER = "other-application"
# A hang shows as a failure after this; the service normally ends within seconds.
EXIT_WAIT_SECONDS = 60
NOT_COMMITTED = -1001  # librdkafka's OFFSET_INVALID: the group never committed


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredBroker]:
    workdir = tmp_path_factory.mktemp("secured-broker")
    broker = start_secured_broker(
        workdir, SERVICE_USER, NO_DEAD_LETTER_USER, RECEIVER_USER, OTHER_USER
    )
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
        "MAGE_LOYALTY_WEBHOOK_SECRET": LOCAL_SECRETS["mage_loyalty"],
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


def sasl_client(secured: SecuredBroker, user: Principal) -> dict[str, str]:
    """librdkafka properties of a client authenticated as `user` over SASL_SSL."""
    return {
        key.removeprefix("KAFKA_").lower().replace("_", "."): value
        for key, value in secured.client_settings(user).items()
        if key != "KAFKA_SASL_PASSWORD_FILE"
    } | {"sasl.password": user.password}


def produce_as(secured: SecuredBroker, user: Principal, topic: str) -> KafkaError | None:
    """One record produced as `user`; the delivery error, or None when it was written."""
    outcome: list[KafkaError | None] = []
    producer = Producer({**sasl_client(secured, user), "enable.idempotence": False})
    producer.produce(topic, b'{"hello":"world"}', on_delivery=lambda e, _m: outcome.append(e))
    assert producer.flush(30) == 0, "the delivery report never came"
    return outcome[0]


def test_only_the_receivers_principal_may_write_the_raw_topic(secured):
    """The trust boundary of Rivo's unsigned topic header: the raw topic is writable by
    the webhook receiver's principal alone (docs/hostile-input.md, the ACL recipe)."""
    topics = provision(secured, SERVICE_USER)
    secured.grant(receiver_acls(secured.users[RECEIVER_USER], raw_topic=topics.raw))
    elsewhere = f"sec-other-{uuid.uuid4().hex[:8]}"
    secured.create_topics([elsewhere])
    other = secured.users[OTHER_USER]
    secured.grant(receiver_acls(other, raw_topic=elsewhere))  # WRITE, on its own topic

    assert produce_as(secured, secured.users[RECEIVER_USER], topics.raw) is None
    assert produce_as(secured, other, elsewhere) is None  # the principal itself works
    refused = produce_as(secured, other, topics.raw)
    assert refused is not None and refused.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    refused = produce_as(secured, secured.users[SERVICE_USER], topics.raw)
    assert refused is not None and refused.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert len(read_all(secured.plaintext, topics.raw, 1)) == 1  # the receiver's record only


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


# --- signed means signed: `run` and its secrets ---------------------------------------


def run_env(bootstrap: str, **variables: str) -> dict[str, str]:
    """The environment of `loyalty-consumer run` without any inherited setting."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("KAFKA_", "LOYALTY_")) and "_WEBHOOK_SECRET" not in k
    }
    return {**env, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, **variables}


@pytest.mark.parametrize(
    "secrets",
    [
        {"MAGE_LOYALTY_WEBHOOK_SECRET": LOCAL_SECRETS["mage_loyalty"]},  # Rivo unsigned
        {"MAGE_LOYALTY_WEBHOOK_SECRET": "m", "RIVO_WEBHOOK_SECRET": " , "},
    ],
    ids=["rivo without a secret", "rivo with an empty secret"],
)
def test_run_refuses_to_start_unless_every_provider_is_signed(
    kafka_bootstrap_servers, tmp_path, secrets
):
    done = processes.run(
        [sys.executable, "-m", "consumer", "run"],
        env=run_env(kafka_bootstrap_servers, LOYALTY_METRICS_PORT="0", **secrets),
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 2
    err = done.stderr.decode()
    assert err.count("\n") == 1, err
    assert err.startswith("loyalty-consumer: RIVO_WEBHOOK_SECRET: not set or empty")
    assert "LOYALTY_UNSIGNED_PROVIDERS" in err


def test_an_unsigned_provider_is_named_logged_exported_and_left_unverified(
    kafka_bootstrap_servers, new_topic, group_id, tmp_path
):
    raw, clean, dlq = new_topic("raw", 1), new_topic("clean", 1), new_topic("dlq", 1)
    (metrics_port,) = free_ports(1)
    env = run_env(
        kafka_bootstrap_servers,
        LOYALTY_RAW_TOPIC=raw,
        LOYALTY_CLEAN_TOPIC=clean,
        LOYALTY_DLQ_TOPIC=dlq,
        LOYALTY_GROUP_ID=group_id,
        LOYALTY_METRICS_PORT=str(metrics_port),
        LOYALTY_POLL_TIMEOUT_SECONDS="0.2",
        MAGE_LOYALTY_WEBHOOK_SECRET=LOCAL_SECRETS["mage_loyalty"],
        LOYALTY_UNSIGNED_PROVIDERS="rivo",
    )
    unsigned_rivo = payloads.rivo_seed_bytes()
    unsigned_mage = payloads.mage_seed_bytes()
    produce_all(
        kafka_bootstrap_servers,
        raw,
        [
            (unsigned_rivo, [("rivo-webhook-topic", b"points_redemption/created")]),
            (unsigned_mage, [("User-Agent", b"MageLoyalty-Webhook/1.0")]),
        ],
    )
    output = tmp_path / "service.log"
    with open(output, "wb") as sink:
        process = processes.start(
            [sys.executable, "-m", "consumer", "run"],
            env=env,
            cwd=tmp_path,
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    service = ServiceProcess(process, output, metrics_port)
    try:
        (accepted,) = read_all(kafka_bootstrap_servers, clean, 1)
        (rejected,) = read_all(kafka_bootstrap_servers, dlq, 1)
        metrics = service.metrics_text()
    finally:
        process.send_signal(signal.SIGTERM)
        status = wait_for_exit(service)
    assert status == 0, output.read_text()[-4000:]

    # Rivo, opted out: accepted unverified (signature_verified null, as the contract says).
    record = RedemptionReader().decode(accepted.value())
    assert record["provider"] == "rivo"
    assert record["metadata"]["signature_verified"] is None
    # Mage keeps its secret: an unsigned Mage body is refused.
    assert dict(rejected.headers())["loyalty.error.reason"] == b"signature_missing"
    # The opt-out is a metric and a warning at start-up.
    assert 'loyalty_unsigned_providers{provider="rivo"} 1.0' in metrics
    assert "mage_loyalty" not in [
        line.split('"')[1]
        for line in metrics.splitlines()
        if line.startswith("loyalty_unsigned_providers{")
    ]
    warnings = [line for line in service.lines() if line.get("level") == "WARNING"]
    assert any(
        line.get("provider") == "rivo" and "signature checks are off" in line["message"]
        for line in warnings
    ), warnings
