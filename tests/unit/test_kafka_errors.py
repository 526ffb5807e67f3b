"""The one place Kafka client errors are classified and translated
(consumer/kafka_errors.py), and that no other module names a KafkaError code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException

from consumer import kafka_errors
from consumer.errors import (
    ConfigError,
    DeliveryFailed,
    KafkaFailure,
    ProducerFenced,
    TopicUnavailable,
)

PACKAGE = Path(__file__).resolve().parents[2] / "consumer"


def error(code: int, text: str = "cause", **flags: bool) -> KafkaError:
    return KafkaError(code, text, **flags)


def test_no_other_module_names_a_kafka_error_code():
    # Reading `KafkaError.<CODE>` anywhere else would decide a code's meaning twice.
    naming = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "kafka_errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "KafkaError"
            ):
                naming.append(f"{path.relative_to(PACKAGE)}: KafkaError.{node.attr}")
    assert naming == []


@pytest.mark.parametrize("code", sorted(kafka_errors.REBALANCING))
def test_a_commit_refused_by_a_rebalance_waits_for_it(code):
    assert kafka_errors.commit_waits_for_rebalance(error(code))


def test_an_authorization_failure_does_not_wait_for_a_rebalance():
    assert not kafka_errors.commit_waits_for_rebalance(error(KafkaError.GROUP_AUTHORIZATION_FAILED))


def test_nothing_to_commit_is_not_a_failure():
    assert kafka_errors.nothing_to_commit(error(KafkaError._NO_OFFSET))
    assert not kafka_errors.nothing_to_commit(error(KafkaError.ILLEGAL_GENERATION))


@pytest.mark.parametrize(
    "code", [KafkaError._BAD_COMPRESSION, KafkaError._BAD_MSG, KafkaError._NOT_IMPLEMENTED]
)
def test_undecodable_batches(code):
    assert kafka_errors.is_undecodable(error(code))


def test_a_transport_error_is_not_undecodable():
    assert not kafka_errors.is_undecodable(error(KafkaError._TRANSPORT))


def test_the_consumer_stops_on_fatal_code_even_without_the_fatal_flag():
    assert kafka_errors.stops_the_consumer(error(KafkaError._FATAL))
    assert not kafka_errors.stops_the_service(error(KafkaError._FATAL))
    assert not kafka_errors.stops_the_consumer(error(KafkaError._TRANSPORT))


def test_end_of_partition_and_existing_topics():
    assert kafka_errors.is_end_of_partition(error(KafkaError._PARTITION_EOF))
    assert kafka_errors.topic_already_exists(error(KafkaError.TOPIC_ALREADY_EXISTS))
    assert not kafka_errors.is_end_of_partition(error(KafkaError._TRANSPORT))


@pytest.mark.parametrize("code", sorted(kafka_errors.FENCED))
def test_fenced_transaction_calls_become_producer_fenced(code):
    failure = kafka_errors.transaction_call_failed("commit_transaction", error(code, "fenced"))
    assert type(failure) is ProducerFenced
    assert str(failure) == "fenced (fenced)"
    assert failure.exit_status == 5


def test_a_fatal_transaction_error_is_fencing():
    fatal = error(KafkaError._TRANSPORT, "gone", fatal=True)
    assert type(kafka_errors.transaction_call_failed("begin_transaction", fatal)) is ProducerFenced


def test_other_transaction_failures_stop_the_service():
    failure = kafka_errors.transaction_call_failed(
        "init_transactions", error(KafkaError._TIMED_OUT, "timed out")
    )
    assert type(failure) is KafkaFailure
    assert str(failure) == "transaction call init_transactions failed: timed out"


def test_retriable_transaction_calls():
    assert kafka_errors.transaction_call_retriable(error(KafkaError._TIMED_OUT, retriable=True))
    assert not kafka_errors.transaction_call_retriable(
        error(KafkaError._TIMED_OUT, retriable=True, fatal=True)
    )
    assert kafka_errors.transaction_needs_abort(error(KafkaError._STATE, txn_requires_abort=True))


def test_translations_keep_the_messages():
    refused = error(KafkaError._MSG_TIMED_OUT, "Local: Message timed out")
    assert type(kafka_errors.delivery_failed("clean", refused)) is DeliveryFailed
    assert str(kafka_errors.delivery_failed("clean", refused)).startswith(
        "clean did not acknowledge a record: Local: Message timed out;"
    )
    stopping = kafka_errors.client_cannot_continue("producer", error(KafkaError._SSL, "bad CA"))
    assert str(stopping) == "kafka producer cannot continue: bad CA (_SSL)"
    unreachable = kafka_errors.topic_unreachable(
        "b:9092", KafkaException(error(KafkaError._TRANSPORT, "down"))
    )
    assert type(unreachable) is TopicUnavailable
    assert str(unreachable) == "cannot reach the brokers at b:9092: down"


def test_describe_reads_plain_messages_too():
    assert kafka_errors.describe(KafkaException(error(KafkaError._TRANSPORT, "down"))) == "down"
    assert kafka_errors.describe(KafkaException("no KafkaError here")) == "no KafkaError here"


def test_a_refused_configuration_names_its_variable():
    refused = KafkaException(error(KafkaError._INVALID_ARG, 'Invalid value "x" for "acks"'))
    named = kafka_errors.configuration_refused(
        refused, "producer", lambda prop: "KAFKA_ACKS" if prop == "acks" else None
    )
    assert type(named) is ConfigError
    assert str(named) == 'KAFKA_ACKS: Invalid value "x" for "acks"'
    unnamed = kafka_errors.configuration_refused(refused, "producer", lambda prop: None)
    assert str(unnamed) == 'the producer refused its configuration: Invalid value "x" for "acks"'
