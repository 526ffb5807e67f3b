"""`loyalty-consumer status`: the consumer group at a glance, as
`kafka-consumer-groups --describe` shows it: its state and members, which member holds
which partition of the raw topic, and per partition the committed offset, the end
offset and the lag between them.

Reads only: the group's description (AdminClient) and its committed offsets (a consumer
that asks for them without joining the group).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from consumer.config import Settings
from consumer.console import console, table
from consumer.errors import ReadFailed
from consumer.kafka_errors import describe
from consumer.kafka_io import construct_client
from consumer.topic_reading import (
    METADATA_TIMEOUT_SECONDS,
    partitions_of,
    reading_consumer,
    watermarks,
)


@dataclass(frozen=True)
class PartitionStatus:
    partition: int
    committed: int | None  # None: the group has committed nothing for it
    end: int
    lag: int  # from the committed offset, or from the oldest record kept
    member: str | None  # member id, None when unassigned
    client_id: str | None
    host: str | None


@dataclass(frozen=True)
class GroupStatus:
    group: str
    topic: str
    state: str
    assignor: str
    members: int
    partitions: tuple[PartitionStatus, ...]

    @property
    def lag(self) -> int:
        return sum(p.lag for p in self.partitions)

    def as_json(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "topic": self.topic,
            "state": self.state,
            "assignor": self.assignor,
            "members": self.members,
            "lag": self.lag,
            "partitions": [p.__dict__ for p in self.partitions],
        }


def group_status(settings: Settings, group: str) -> GroupStatus:
    topic = settings.raw_topic
    # Committed offsets through a consumer of the group that never joins it: librdkafka's
    # admin offset listing can crash the process while the coordinator loads (see
    # consumer/dev/local_broker.py).
    reader = reading_consumer(settings, "status", **{"group.id": group})
    try:
        numbers = partitions_of(reader, topic, settings, "the raw topic, LOYALTY_RAW_TOPIC")
        try:
            committed = {
                tp.partition: tp.offset
                for tp in reader.committed(
                    [TopicPartition(topic, n) for n in numbers], timeout=METADATA_TIMEOUT_SECONDS
                )
            }
        except KafkaException as exc:
            raise ReadFailed(
                f"cannot read the committed offsets of {group}: {describe(exc)}"
            ) from None
        bounds = watermarks(reader, topic, numbers)
        admin = construct_client(
            AdminClient, settings, "consumer", settings.client_config({}, "consumer"), {}
        )
        try:
            description = admin.describe_consumer_groups(
                [group], request_timeout=METADATA_TIMEOUT_SECONDS
            )[group].result()
        except KafkaException as exc:
            raise ReadFailed(f"cannot describe group {group}: {describe(exc)}") from None
    finally:
        reader.close()
    holders: dict[int, Any] = {}
    for member in description.members:
        for tp in member.assignment.topic_partitions if member.assignment else ():
            if tp.topic == topic:
                holders[tp.partition] = member
    partitions = []
    for number in numbers:
        low, high = bounds[number]
        offset = committed.get(number, -1)
        member = holders.get(number)
        partitions.append(
            PartitionStatus(
                partition=number,
                committed=offset if offset >= 0 else None,
                end=high,
                lag=max(0, high - (offset if offset >= 0 else low)),
                member=member.member_id if member else None,
                client_id=member.client_id if member else None,
                host=member.host if member else None,
            )
        )
    return GroupStatus(
        group=group,
        topic=topic,
        state=str(description.state).rsplit(".", 1)[-1].lower(),
        assignor=description.partition_assignor or "-",
        members=len(description.members),
        partitions=tuple(partitions),
    )


def run_status(settings: Settings, group: str | None, as_json: bool) -> int:
    status = group_status(settings, group or settings.group_id)
    out = console()
    if as_json:
        out.file.write(orjson.dumps(status.as_json()).decode() + "\n")
        return 0
    out.print(
        f"group {status.group}: {status.state}, {status.members} member(s), "
        f"assignor {status.assignor}; topic {status.topic}: lag {status.lag}"
    )
    rows = [
        (
            p.partition,
            "-" if p.committed is None else p.committed,
            p.end,
            p.lag,
            p.client_id or "-",
            p.host or "-",
            p.member or "-",
        )
        for p in status.partitions
    ]
    out.print(
        table(
            status.topic,
            ("partition", "committed", "end", "lag", "client id", "host", "member id"),
            rows,
        )
    )
    return 0
