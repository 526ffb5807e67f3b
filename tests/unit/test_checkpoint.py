"""consumer.checkpoint through the client seam: what an exactly-once checkpoint does
when the broker asks it to abort while the group coordinator is moving."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from consumer import checkpoint
from consumer.checkpoint import ExactlyOnce
from consumer.errors import KafkaFailure
from consumer.kafka_io import DeliveryReports
from consumer.metrics import Metrics
from consumer.watchdog import Watchdog

RAW = "raw"


def refused(code: int, **flags: bool) -> KafkaException:
    return KafkaException(KafkaError(code, "cause", **flags))


class TransactionalProducer:
    def __init__(self):
        self.calls: list[str] = []

    def begin_transaction(self):
        self.calls.append("begin")

    def send_offsets_to_transaction(self, offsets, metadata, timeout):
        self.calls.append("send_offsets")
        # What a broker restart causes: the offsets' coordinator moved.
        raise refused(KafkaError.NOT_COORDINATOR, txn_requires_abort=True)

    def abort_transaction(self, timeout):
        self.calls.append("abort")


class MovingCoordinatorConsumer:
    """`committed` is refused with `refusals` in turn, then answers offset 40."""

    def __init__(self, refusals):
        self.refusals = list(refusals)
        self.reads = 0
        self.seeks: list[tuple[int, int]] = []

    def assignment(self):
        return [TopicPartition(RAW, 0), TopicPartition(RAW, 1)]

    def consumer_group_metadata(self):
        return object()

    def committed(self, partitions, timeout):
        self.reads += 1
        if self.refusals:
            raise self.refusals.pop(0)
        return [TopicPartition(tp.topic, tp.partition, 40) for tp in partitions]

    def seek(self, tp):
        self.seeks.append((tp.partition, tp.offset))


def aborted_checkpoint(consumer, monkeypatch):
    monkeypatch.setattr(checkpoint, "COORDINATOR_RETRY_SECONDS", 0.01)
    metrics = Metrics()
    producer = TransactionalProducer()
    exactly_once = ExactlyOnce(
        consumer, producer, DeliveryReports(metrics), metrics, Watchdog(25.0)
    )
    exactly_once.before_outputs()
    return exactly_once, producer


def test_an_abort_rewinds_once_the_moving_coordinator_answers(monkeypatch):
    consumer = MovingCoordinatorConsumer(
        [refused(KafkaError.NOT_COORDINATOR), refused(KafkaError.COORDINATOR_LOAD_IN_PROGRESS)]
    )
    exactly_once, producer = aborted_checkpoint(consumer, monkeypatch)
    assert exactly_once.commit({(RAW, 0): 50, (RAW, 1): 60}, final=False) is False
    assert producer.calls == ["begin", "send_offsets", "abort"]
    assert consumer.reads == 3
    assert consumer.seeks == [(0, 40), (1, 40)]


def test_an_abort_that_cannot_read_where_to_rewind_stops_the_service(monkeypatch):
    consumer = MovingCoordinatorConsumer([refused(KafkaError.GROUP_AUTHORIZATION_FAILED)])
    exactly_once, _ = aborted_checkpoint(consumer, monkeypatch)
    with pytest.raises(KafkaFailure, match="committed offsets to rewind to"):
        exactly_once.commit({(RAW, 0): 50}, final=False)
    assert consumer.reads == 1
    assert consumer.seeks == []
