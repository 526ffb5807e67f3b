"""The ledger: accounts for every raw (partition, offset) by what the outputs say.

Each raw record has one expected outcome, decided by running the (pure) pipeline on it
offline: accepted -> exactly one clean record whose lineage metadata names it, rejected
-> exactly one dead letter whose __connect.errors.* headers name it, ignored -> nothing.
Anything else is a named anomaly: `lost` (an expected output is missing), `duplicated`
(more than one), `misrouted` (an output of the wrong kind, or for an ignored record).
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, Message

from consumer import dead_letter
from consumer.pipeline import Pipeline
from consumer.reader import RedemptionReader
from consumer.records import Accepted, Ignored, RawRecord

Coordinates = tuple[int, int]  # (partition, offset) of a raw record


@dataclass
class Ledger:
    records: int = 0
    expected: Counter = field(default_factory=Counter)  # accepted / ignored / rejected
    lost: list[Coordinates] = field(default_factory=list)
    duplicated: dict[Coordinates, int] = field(default_factory=dict)
    misrouted: list[Coordinates] = field(default_factory=list)
    extra_outputs: int = 0  # outputs beyond one per raw record (the duplicates' copies)

    @property
    def exact(self) -> bool:
        return not (self.lost or self.duplicated or self.misrouted)

    def summary(self) -> dict[str, int]:
        return {
            "records": self.records,
            "accepted": self.expected["accepted"],
            "ignored": self.expected["ignored"],
            "rejected": self.expected["rejected"],
            "lost": len(self.lost),
            "duplicated": len(self.duplicated),
            "extra_outputs": self.extra_outputs,
            "misrouted": len(self.misrouted),
        }


def read_topic(bootstrap: str, topic: str, isolation: str = "read_committed") -> list[Message]:
    """Every record of `topic` from the beginning to its current end, as a reader with
    the given isolation level sees it (aborted transactions are invisible to
    read_committed; their records stay in the log)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"ledger-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": isolation,
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.subscribe([topic])
        at_end: set[int] = set()
        messages: list[Message] = []
        deadline = time.monotonic() + 120
        while len(at_end) < len(partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic} did not reach its end")
            for message in consumer.consume(1000, 1.0):
                error = message.error()
                if error is None:
                    messages.append(message)
                    at_end.discard(message.partition())
                elif error.code() == KafkaError._PARTITION_EOF:
                    at_end.add(message.partition())
                else:
                    raise RuntimeError(f"reading {topic}: {error.str()}")
        return messages
    finally:
        consumer.close()


def account(
    bootstrap: str,
    raw_topic: str,
    clean_topic: str,
    dead_letter_topic: str,
    pipeline: Pipeline,
    isolation: str = "read_committed",
) -> Ledger:
    ledger = Ledger()
    expected: dict[Coordinates, str] = {}
    for message in read_topic(bootstrap, raw_topic):
        raw = RawRecord(value=message.value(), headers=message.headers() or ())
        outcome = pipeline.process(raw)
        kind = (
            "accepted"
            if isinstance(outcome, Accepted)
            else "ignored"
            if isinstance(outcome, Ignored)
            else "rejected"
        )
        expected[(message.partition(), message.offset())] = kind
        ledger.expected[kind] += 1
    ledger.records = len(expected)

    reader = RedemptionReader()
    seen: dict[str, Counter] = {"accepted": Counter(), "rejected": Counter()}
    for message in read_topic(bootstrap, clean_topic, isolation):
        metadata = reader.decode(message.value())["metadata"]
        seen["accepted"][(metadata["source_partition"], metadata["source_offset"])] += 1
    for message in read_topic(bootstrap, dead_letter_topic, isolation):
        headers = dict(message.headers() or ())
        coordinates = (
            int(headers[dead_letter.CONNECT_PARTITION]),
            int(headers[dead_letter.CONNECT_OFFSET]),
        )
        seen["rejected"][coordinates] += 1

    for coordinates, kind in expected.items():
        for output_kind, counts in seen.items():
            count = counts.get(coordinates, 0)
            if output_kind == kind:
                if count == 0:
                    ledger.lost.append(coordinates)
                elif count > 1:
                    ledger.duplicated[coordinates] = count
                    ledger.extra_outputs += count - 1
            elif count:
                ledger.misrouted.append(coordinates)
    for counts in seen.values():
        ledger.misrouted.extend(c for c in counts if c not in expected)
    return ledger
