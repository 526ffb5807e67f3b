"""A corrupt compressed batch on the broker, met by a running `loyalty-consumer run`: the
partition does not stall. Each offset of the batch becomes one `undecodable_record`
dead letter, the good records on either side come out on the clean topic, and the
partition is committed to its end by a service that is still healthy.

The broker decompresses every batch it is sent, so a corrupt one cannot be produced:
the test produces a valid zstd batch and then damages it in the segment file under the
running broker, which serves fetches from that file. Uses a broker of its own, since it
needs the broker's log directory."""

from __future__ import annotations

import struct
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from consumer import dead_letter
from consumer.config import AT_LEAST_ONCE, EXACTLY_ONCE
from consumer.dev.local_broker import LocalBroker
from consumer.reader import RedemptionReader
from consumer.runner import UNDECODABLE_ATTEMPTS
from tests.helpers import processes
from tests.integration.ledger import read_topic
from tests.integration.service_harness import (
    everything_committed,
    scraped_total,
    start_service_process,
    wait_until,
)
from tests.integration.test_service import rivo_redemptions

# Offsets of the raw partition: two good records, a batch of three that is corrupted
# on disk, two good records after it; each group in a batch of its own.
BEFORE, CORRUPT, AFTER = [0, 1], [2, 3, 4], [5, 6]
# A v2 record batch: base offset (8) and length (4), then the rest of its 61-byte header,
# then the records (compressed as a whole when the batch is).
BATCH_PREFIX = struct.Struct(">qi")
BATCH_HEADER_BYTES = 61
ATTRIBUTES_AT = 21
ZSTD = 4  # the compression codec in the low three bits of the batch's attributes


@pytest.fixture(scope="module")
def own_broker() -> Iterator[LocalBroker]:
    with LocalBroker() as broker:
        yield broker


def produce_in_batches(bootstrap: str, topic: str, batches: list[list[int]]) -> None:
    """Signed redemptions to partition 0 of `topic`, zstd-compressed, one batch per list
    of offsets (a flush after each)."""
    records = list(rivo_redemptions(sum(map(len, batches)), first_id=88_000_000))
    producer = Producer({"bootstrap.servers": bootstrap, "compression.type": "zstd"})
    for offsets in batches:
        for offset in offsets:
            body, headers = records[offset]
            producer.produce(topic, value=body, headers=list(headers), partition=0)
        assert producer.flush(30) == 0


def record_batches(segment: Path) -> list[tuple[int, int, int, int]]:
    """(base offset, position in the file, size, attributes) of each batch of a segment."""
    data = segment.read_bytes()
    batches, position = [], 0
    while position + BATCH_PREFIX.size <= len(data):
        base_offset, length = BATCH_PREFIX.unpack_from(data, position)
        (attributes,) = struct.unpack_from(">h", data, position + ATTRIBUTES_AT)
        batches.append((base_offset, position, BATCH_PREFIX.size + length, attributes))
        position += BATCH_PREFIX.size + length
    return batches


def tear(segment: Path, position: int, size: int) -> None:
    """Zero the back half of a batch's compressed records, as a torn write would; the
    header stays, so the broker still serves the batch (its CRC, which the client does
    not check by default, no longer matches). Flipping a few bytes is not enough: zstd
    carries no checksum of its own here, and a few bytes of literals decompress to
    different record bytes without an error."""
    records = size - BATCH_HEADER_BYTES
    with segment.open("r+b") as file:
        file.seek(position + BATCH_HEADER_BYTES + records // 2)
        file.write(bytes(records - records // 2))


def first_message(bootstrap: str, topic: str, offset: int) -> Message:
    """The first thing a plain consumer fetching partition 0 of `topic` from `offset` gets."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"probe-{uuid.uuid4()}"})
    consumer.assign([TopicPartition(topic, 0, offset)])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for message in consumer.consume(1, 1.0):
                return message
        raise AssertionError(f"nothing fetched from {topic} at {offset}")
    finally:
        consumer.close()


def _healthy(port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
        return response.status == 200


@pytest.mark.parametrize("guarantee", [AT_LEAST_ONCE, EXACTLY_ONCE])
def test_a_corrupt_batch_becomes_one_dead_letter_per_offset_and_the_partition_moves_on(
    own_broker, guarantee, tmp_path
):
    bootstrap = own_broker.bootstrap_servers
    name = f"corrupt-{uuid.uuid4().hex[:10]}"
    raw, clean, dlq = f"{name}-raw", f"{name}-clean", f"{name}-dlq"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics(
        [NewTopic(topic, 1, 1) for topic in (raw, clean, dlq)]
    ).values():
        future.result(30)

    produce_in_batches(bootstrap, raw, [BEFORE, CORRUPT, AFTER])
    segment = own_broker.data_dir / f"{raw}-0" / f"{0:020d}.log"
    batches = record_batches(segment)
    assert [batch[0] for batch in batches] == [BEFORE[0], CORRUPT[0], AFTER[0]]
    assert all(attributes & 0b111 == ZSTD for *_, attributes in batches)
    _, position, size, _ = batches[1]
    tear(segment, position, size)

    # The premise, and what the loop relies on: the client reports the batch as
    # undecodable at its base offset, even when fetching from inside it.
    probe = first_message(bootstrap, raw, CORRUPT[1])
    assert probe.error() is not None and probe.error().code() == KafkaError._BAD_COMPRESSION
    assert probe.offset() == CORRUPT[0]

    log = tmp_path / "service.log"
    with log.open("wb") as output:
        service, port = start_service_process(
            bootstrap, name, output, LOYALTY_PROCESSING_GUARANTEE=guarantee
        )
    try:
        wait_until(
            lambda: (
                service.poll() is not None
                or everything_committed(bootstrap, f"{name}-group", raw, 1)
            ),
            "the raw partition to be committed to its end",
        )
        assert service.poll() is None, log.read_text()[-3000:]
        assert _healthy(port)
        counted = {
            outcome: scraped_total(port, "loyalty_records_processed_total", outcome=outcome)
            for outcome in ("accepted", "ignored", "rejected")
        }
        undecodable = scraped_total(
            port, "loyalty_records_processed_total", reason="undecodable_record"
        )
        dead_lettered = scraped_total(
            port, "loyalty_dead_letter_records_total", reason="undecodable_record"
        )
        consume_errors = scraped_total(
            port, "loyalty_consume_errors_total", error="_BAD_COMPRESSION"
        )
    finally:
        status = processes.stop(service)
    assert status == 0, log.read_text()[-3000:]

    good = BEFORE + AFTER
    assert counted == {"accepted": len(good), "ignored": 0, "rejected": len(CORRUPT)}
    assert undecodable == dead_lettered == len(CORRUPT)
    # Reported at the base offset UNDECODABLE_ATTEMPTS times before it is given up, then
    # once more (at least) for each later offset of the batch.
    assert consume_errors >= UNDECODABLE_ATTEMPTS + len(CORRUPT) - 1

    reader = RedemptionReader()
    lineage = sorted(
        (metadata["source_partition"], metadata["source_offset"])
        for metadata in (reader.decode(m.value())["metadata"] for m in read_topic(bootstrap, clean))
    )
    assert lineage == [(0, offset) for offset in good]

    letters = read_topic(bootstrap, dlq)
    assert sorted(int(dict(m.headers())[dead_letter.CONNECT_OFFSET]) for m in letters) == CORRUPT
    for letter in letters:
        headers = dict(letter.headers())
        assert letter.value() is None
        assert headers[dead_letter.REASON] == b"undecodable_record"
        assert headers[dead_letter.CONNECT_TOPIC] == raw.encode()
        assert headers[dead_letter.CONNECT_PARTITION] == b"0"
        assert headers[dead_letter.CONNECT_EXCEPTION_CLASS] == b"KafkaError._BAD_COMPRESSION"
