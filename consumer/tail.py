"""`loyalty-consumer tail`: what the service wrote, as JSON lines, without writing a
consumer. The clean topic's records are decoded (either wire format); dead letters come
with their reason headers and, with --raw-value, the value they carried.

Reads without a consumer group of its own commitments (it never commits), so it can be
run as often as wanted against production topics.
"""

from __future__ import annotations

import base64
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from consumer import dead_letter
from consumer.config import Settings
from consumer.console import console
from consumer.kafka_io import TopicUnavailable, construct_client, topic_partitions
from consumer.reader import RedemptionReader
from consumer.records import iso_utc
from consumer.replay import dead_letter_facts, original_headers

METADATA_TIMEOUT_SECONDS = 10.0
# Without --from-beginning, this many of the newest records of each partition.
LAST_PER_PARTITION = 10


@dataclass(frozen=True)
class TailOptions:
    dead_letters: bool = False
    from_beginning: bool = False
    follow: bool = False
    max_records: int | None = None
    providers: frozenset[str] = frozenset()
    reasons: frozenset[str] = frozenset()
    raw_value: bool = False


class TailFailed(Exception):
    """Cannot read: the message says why, in one line."""


def run_tail(settings: Settings, options: TailOptions) -> int:
    topic = settings.dead_letter_topic if options.dead_letters else settings.clean_topic
    reader = None if options.dead_letters else RedemptionReader(settings.schema_registry_url, topic)
    out = console()
    printed = 0
    for message in _messages(settings, topic, options):
        if reader is None:
            line = dead_letter_line(message, options.raw_value)
        else:
            line = clean_line(message, reader)
        if not _selected(line, options):
            continue
        text = orjson.dumps(line).decode()
        if out.is_terminal:
            out.print_json(text, indent=None)
        else:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()
        printed += 1
        if options.max_records is not None and printed >= options.max_records:
            break
    return 0


def _selected(line: dict[str, Any], options: TailOptions) -> bool:
    if options.providers and line.get("provider") not in options.providers:
        return False
    return not (options.reasons and line.get("reason") not in options.reasons)


def clean_line(message: Message, reader: RedemptionReader) -> dict[str, Any]:
    headers = {n: (v or b"").decode("utf-8", "replace") for n, v in message.headers() or ()}
    try:
        record: Any = _jsonable(reader.decode(message.value()))
        problem = None
    except Exception as exc:  # a record we cannot decode is shown, not fatal
        record, problem = None, f"cannot decode: {exc}"
    line = {
        **_coordinates(message),
        "provider": headers.get("provider"),
        "event_type": headers.get("event_type"),
        "event_id": headers.get("event_id"),
        "key": _text(message.key()),
        "record": record,
    }
    if problem:
        line["error"] = problem
    return line


def dead_letter_line(message: Message, raw_value: bool) -> dict[str, Any]:
    facts = dead_letter_facts(message.headers())
    line: dict[str, Any] = {
        **_coordinates(message),
        "reason": facts.get(dead_letter.REASON),
        "provider": facts.get(dead_letter.PROVIDER),
        "event_type": facts.get(dead_letter.EVENT_TYPE),
        "field": facts.get(dead_letter.FIELD),
        "message": facts.get(dead_letter.CONNECT_EXCEPTION_MESSAGE),
        "failed_at": facts.get(dead_letter.FAILED_AT),
        "source": {
            "topic": facts.get(dead_letter.CONNECT_TOPIC),
            "partition": _int(facts.get(dead_letter.CONNECT_PARTITION)),
            "offset": _int(facts.get(dead_letter.CONNECT_OFFSET)),
        },
        "key": _text(message.key()),
        "headers": [[n, _text(v)] for n, v in original_headers(message.headers())],
    }
    if dead_letter.VALUE_OMITTED_BYTES in facts:
        line["value_omitted_bytes"] = _int(facts[dead_letter.VALUE_OMITTED_BYTES])
    if raw_value:
        value = message.value()
        try:
            line["value"] = None if value is None else value.decode("utf-8")
        except UnicodeDecodeError:
            line["value_base64"] = base64.b64encode(value).decode()
    return line


def _coordinates(message: Message) -> dict[str, Any]:
    _, timestamp_ms = message.timestamp()
    return {
        "topic": message.topic(),
        "partition": message.partition(),
        "offset": message.offset(),
        "timestamp": iso_utc(datetime.fromtimestamp(timestamp_ms / 1000, UTC))
        if timestamp_ms and timestamp_ms > 0
        else None,
    }


def _messages(settings: Settings, topic: str, options: TailOptions) -> Iterator[Message]:
    consumer = construct_client(
        Consumer,
        settings,
        "consumer",
        settings.client_config(
            {
                # librdkafka needs a group id even for assign(); nothing is committed.
                "group.id": f"loyalty-consumer-tail-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
            },
            "consumer",
        ),
        {},
    )
    try:
        ends = _start(consumer, topic, settings, options)
        done = {p for p, (start, end) in ends.items() if start >= end}
        if not options.follow and len(done) == len(ends):
            return
        consumer.assign([TopicPartition(topic, p, start) for p, (start, _) in ends.items()])
        while True:
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    done.add(message.partition())
                    if not options.follow and len(done) == len(ends):
                        return
                    continue
                raise TailFailed(f"reading {topic} failed: {error.str()}")
            yield message
    finally:
        consumer.close()


def _start(
    consumer: Consumer, topic: str, settings: Settings, options: TailOptions
) -> dict[int, tuple[int, int]]:
    try:
        numbers = topic_partitions(
            consumer, topic, settings.bootstrap_servers, METADATA_TIMEOUT_SECONDS
        )
    except TopicUnavailable as exc:
        raise TailFailed(str(exc)) from None
    positions = {}
    for number in numbers:
        low, high = consumer.get_watermark_offsets(
            TopicPartition(topic, number), timeout=METADATA_TIMEOUT_SECONDS
        )
        start = low if options.from_beginning else max(low, high - LAST_PER_PARTITION)
        positions[number] = (start, high)
    return positions


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", errors="replace")


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    return value
