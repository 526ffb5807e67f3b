"""End-to-end plumbing on a real broker: produce, consume in a group, commit, read back."""

from __future__ import annotations

import time
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from tests.integration.service_harness import assert_committed_to_the_end

RECORDS = 60
PARTITIONS = 3
# Fewer keys than records so several records share a key (and therefore a partition).
DISTINCT_KEYS = 12
CONSUME_TIMEOUT_SECONDS = 60.0

Record = tuple[int, int, bytes, bytes]  # partition, offset, key, value


def test_committed_offsets_match_end_offsets(
    kafka_bootstrap_servers: str,
    admin: AdminClient,
    new_topic: Callable[..., str],
    group_id: str,
) -> None:
    topic = new_topic("plumbing", partitions=PARTITIONS)

    produced = _produce(kafka_bootstrap_servers, topic)
    assert len(produced) == RECORDS
    assert len({partition for partition, *_ in produced}) > 1, "keys did not spread records"

    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap_servers,
            "group.id": group_id,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.subscribe([topic])
        consumed = _consume(consumer, RECORDS)
        committed_now = consumer.commit(asynchronous=False)
        assert committed_now is not None
        assert all(tp.error is None for tp in committed_now), committed_now

        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        committed = {tp.partition: tp.offset for tp in consumer.committed(partitions, timeout=10)}
    finally:
        consumer.close()

    end_offsets = _end_offsets(admin, partitions)
    assert sorted(consumed) == sorted(produced)
    assert sum(end_offsets.values()) == RECORDS
    assert_committed_to_the_end(committed, end_offsets)

    # The commit must outlive the consumer: a new member of the group reads it back from
    # the broker. (Not AdminClient.list_consumer_group_offsets, which can crash the process
    # in librdkafka 2.x when the coordinator answers with a retriable error.)
    successor = Consumer({"bootstrap.servers": kafka_bootstrap_servers, "group.id": group_id})
    try:
        persisted = successor.committed(partitions, timeout=10)
    finally:
        successor.close()
    assert_committed_to_the_end({tp.partition: tp.offset for tp in persisted}, end_offsets)


def _produce(bootstrap_servers: str, topic: str) -> list[Record]:
    producer = Producer(
        {"bootstrap.servers": bootstrap_servers, "acks": "all", "enable.idempotence": True}
    )
    delivered: list[Record] = []
    failures: list[KafkaError] = []

    def on_delivery(error: KafkaError | None, message: Message) -> None:
        if error is not None:
            failures.append(error)
        else:
            delivered.append(_as_record(message))

    for i in range(RECORDS):
        key = f"member-{i % DISTINCT_KEYS}".encode()
        producer.produce(topic, key=key, value=f"redemption-{i}".encode(), on_delivery=on_delivery)
    remaining = producer.flush(timeout=30)

    assert remaining == 0, f"{remaining} records were never acknowledged"
    assert failures == []
    return delivered


def _consume(consumer: Consumer, count: int) -> list[Record]:
    records: list[Record] = []
    deadline = time.monotonic() + CONSUME_TIMEOUT_SECONDS
    while len(records) < count and time.monotonic() < deadline:
        message = consumer.poll(timeout=1.0)
        if message is None:
            continue
        assert message.error() is None, message.error()
        records.append(_as_record(message))
    assert len(records) == count, f"consumed {len(records)} of {count} records in time"
    return records


def _end_offsets(admin: AdminClient, partitions: list[TopicPartition]) -> dict[int, int]:
    # Asked through the admin client's own connection: a consumer's ListOffsets request
    # queues behind its long-polling fetch and takes ~0.5 s per partition.
    futures = admin.list_offsets({tp: OffsetSpec.latest() for tp in partitions})
    return {tp.partition: future.result(timeout=10).offset for tp, future in futures.items()}


def _as_record(message: Message) -> Record:
    return (message.partition(), message.offset(), message.key(), message.value())
