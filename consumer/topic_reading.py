"""Reading a range of a topic without joining a group, for the operators' commands
(tail, replay, status): a consumer that never commits, the topic's partitions and
watermarks, and the records between two positions per partition."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from consumer.config import Settings
from consumer.errors import ReadFailed, TopicUnavailable
from consumer.kafka_errors import describe, is_end_of_partition
from consumer.kafka_io import construct_client, topic_partitions

# Metadata and watermark requests of the operators' commands: long enough for a busy
# cluster, short enough that an unreachable one is said within seconds.
METADATA_TIMEOUT_SECONDS = 10.0
# How long one poll waits; a person pressing Ctrl-C waits at most this long.
POLL_SECONDS = 0.5


def reading_consumer(settings: Settings, purpose: str, **config: Any) -> Consumer:
    """A consumer for assign(): librdkafka needs a group id even then, so a throwaway
    one; nothing is committed under it unless `config` names a group of its own."""
    return construct_client(
        Consumer,
        settings,
        "consumer",
        settings.client_config(
            {
                "group.id": f"loyalty-consumer-{purpose}-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                **config,
            },
            "consumer",
        ),
        {},
    )


def partitions_of(consumer: Consumer, topic: str, settings: Settings, role: str = "") -> list[int]:
    """The topic's partition numbers; ReadFailed naming the variable when it is missing."""
    try:
        return topic_partitions(
            consumer, topic, settings.bootstrap_servers, METADATA_TIMEOUT_SECONDS
        )
    except TopicUnavailable as exc:
        raise ReadFailed(f"{exc}{f' ({role})' if role else ''}") from None


def watermarks(consumer: Consumer, topic: str, partitions: list[int]) -> dict[int, tuple[int, int]]:
    """(low, high) per partition: the oldest offset kept and the next one to be written."""
    try:
        return {
            number: consumer.get_watermark_offsets(
                TopicPartition(topic, number), timeout=METADATA_TIMEOUT_SECONDS
            )
            for number in partitions
        }
    except KafkaException as exc:
        raise ReadFailed(f"cannot read the offsets of {topic}: {describe(exc)}") from None


def read_range(
    consumer: Consumer,
    topic: str,
    starts: Mapping[int, int],
    ends: Mapping[int, int] | None,
    follow: bool = False,
) -> Iterator[Message]:
    """The records of each partition from its start up to its end (exclusive), or, with
    `follow`, on and on. `ends` None: up to the end each partition has when reached."""
    ends = dict(ends) if ends is not None else None
    done = {p for p in starts if ends is not None and starts[p] >= ends.get(p, 0)}
    if not follow and len(done) == len(starts):
        return
    consumer.assign([TopicPartition(topic, p, offset) for p, offset in starts.items()])
    while follow or len(done) < len(starts):
        message = consumer.poll(POLL_SECONDS)
        if message is None:
            continue
        error = message.error()
        partition = message.partition()
        if error is not None:
            if is_end_of_partition(error):
                done.add(partition)
                continue
            raise ReadFailed(f"reading {topic} failed: {error.str()}")
        if partition in done and not follow:
            continue
        if ends is not None and not follow and message.offset() >= ends.get(partition, 0):
            done.add(partition)
            consumer.pause([TopicPartition(topic, partition)])
            continue
        yield message
        if ends is not None and not follow and message.offset() + 1 >= ends.get(partition, 0):
            done.add(partition)
