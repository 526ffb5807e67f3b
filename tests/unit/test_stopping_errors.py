"""Which Kafka client errors stop the service (consumer.kafka_errors.STOPPING_ERRORS): the
ones no retry cures (credentials, trust, ACLs) and librdkafka's fatal errors; transient
ones are only logged and counted."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError

from consumer.errors import KafkaFailure
from consumer.kafka_errors import stops_the_service
from consumer.kafka_io import _callbacks
from consumer.metrics import Metrics


@pytest.mark.parametrize(
    "code",
    [
        KafkaError._AUTHENTICATION,
        KafkaError._SSL,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    ],
)
def test_errors_no_retry_cures_stop_the_service(code):
    assert stops_the_service(KafkaError(code, "cause"))


@pytest.mark.parametrize(
    "code",
    [KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError.NOT_COORDINATOR],
)
def test_transient_errors_do_not(code):
    assert not stops_the_service(KafkaError(code, "cause"))


def test_a_fatal_error_stops_the_service_whatever_its_code():
    assert stops_the_service(KafkaError(KafkaError._FENCED, "fenced", fatal=True))


def test_the_error_callback_raises_once_naming_client_and_cause(caplog):
    metrics = Metrics()
    on_error = _callbacks("producer", metrics)["error_cb"]
    error = KafkaError(KafkaError._AUTHENTICATION, "SASL authentication error: bad credentials")

    with pytest.raises(KafkaFailure, match="kafka producer cannot continue: SASL authentication"):
        on_error(error)
    # Reported again on every reconnect: logged, not raised into the shutdown.
    on_error(error)
    on_error(KafkaError(KafkaError._TRANSPORT, "connection refused"))

    assert [record.client for record in caplog.records] == ["producer", "producer"]
    sample = metrics.registry.get_sample_value(
        "loyalty_kafka_client_errors_total", {"client": "producer", "error": "_AUTHENTICATION"}
    )
    assert sample == 2
