"""`loyalty-consumer tail`: what the service wrote, without writing a consumer. The clean
topic's records are decoded (either wire format); dead letters come with what the
service said about them (reason, source coordinates, an earlier replay) and, with
--raw-value, the value they carried.

Where to start and stop as kcat and rpk do: partitions, an offset (a number,
beginning, end, or -N: the last N of each partition), a time range; then filters; then
an output format: JSON lines, the value only, pretty JSON, or a template.

It never commits (a throwaway group id), so it can be run as often as wanted against
production topics.
"""

from __future__ import annotations

import base64
import string
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from consumer import dead_letter
from consumer.config import Settings
from consumer.console import console
from consumer.dead_letter_reader import DeadLetter, DeadLetterFilter, parse_int
from consumer.errors import ReadFailed, TailUsageError
from consumer.kafka_errors import describe
from consumer.reader import RedemptionReader
from consumer.records import iso_utc, jsonable
from consumer.topic_reading import (
    METADATA_TIMEOUT_SECONDS,
    partitions_of,
    read_range,
    reading_consumer,
    watermarks,
)

# Without --offset, --from-beginning or --since: this many of the newest records of
# each partition, as `tail` shows the last lines of a file.
LAST_PER_PARTITION = 10
FORMATS = ("json", "value", "pretty")

CLEAN_FIELDS = (
    "topic",
    "partition",
    "offset",
    "timestamp",
    "provider",
    "event_type",
    "event_id",
    "key",
    "record",
    "error",
)
DEAD_LETTER_FIELDS = (
    "topic",
    "partition",
    "offset",
    "timestamp",
    "reason",
    "provider",
    "event_type",
    "field",
    "message",
    "failed_at",
    "source",
    "replay_of",
    "key",
    "headers",
    "value",
    "value_base64",
    "value_omitted_bytes",
)


@dataclass(frozen=True)
class Offset:
    """Where each partition starts: 'beginning', 'end', an absolute offset, or the last
    N records (`last`)."""

    beginning: bool = False
    end: bool = False
    absolute: int | None = None
    last: int | None = None

    @classmethod
    def parse(cls, text: str) -> Offset:
        if text == "beginning":
            return cls(beginning=True)
        if text == "end":
            return cls(end=True)
        try:
            number = int(text)
        except ValueError:
            raise TailUsageError(
                f"--offset {text!r}: a number, beginning, end, or -N (the last N)"
            ) from None
        return cls(last=-number) if number < 0 else cls(absolute=number)

    def start(self, low: int, high: int) -> int:
        if self.beginning:
            return low
        if self.end:
            return high
        if self.absolute is not None:
            return min(max(self.absolute, low), high)
        return max(low, high - (self.last if self.last is not None else LAST_PER_PARTITION))


@dataclass(frozen=True)
class TailOptions:
    dead_letters: bool = False
    offset: Offset = field(default_factory=Offset)
    since: datetime | None = None
    until: datetime | None = None
    partitions: frozenset[int] = frozenset()
    follow: bool = False
    max_records: int | None = None
    keys: frozenset[str] = frozenset()
    # Clean topic: provider and event type only; dead letters: every criterion.
    selection: DeadLetterFilter = field(default_factory=DeadLetterFilter)
    raw_value: bool = False
    output: str = "json"  # one of FORMATS, or a template

    def __post_init__(self) -> None:
        if self.max_records is not None and self.max_records < 1:
            raise TailUsageError("--max must be at least 1")
        if self.since and self.until and self.since >= self.until:
            raise TailUsageError("--since must be before --until")
        if self.until and self.follow:
            raise TailUsageError("--until and --follow contradict each other: drop one")
        if self.since and self.offset != Offset():
            raise TailUsageError("--since and --offset/--from-beginning contradict: drop one")
        if self.offset.end and not self.follow:
            raise TailUsageError("--offset end shows only new records: add --follow")
        if any(p < 0 for p in self.partitions):
            raise TailUsageError("--partition must not be negative")
        if not self.dead_letters:
            clean_only = DeadLetterFilter(
                providers=self.selection.providers, event_types=self.selection.event_types
            )
            if self.selection != clean_only:
                raise TailUsageError(
                    "--reason, --failed-*, --source-* select dead letters: use `tail dead-letter`"
                )
            if self.raw_value:
                raise TailUsageError("--raw-value applies to dead letters: `tail dead-letter`")
        if self.output not in FORMATS:
            self._check_template()

    def _check_template(self) -> None:
        known = DEAD_LETTER_FIELDS if self.dead_letters else CLEAN_FIELDS
        try:
            names = [name for _, name, _, _ in string.Formatter().parse(self.output) if name]
        except ValueError as exc:
            raise TailUsageError(f"--format {self.output!r}: {exc}") from None
        if not names:
            raise TailUsageError(
                f"--format {self.output!r}: json, value, pretty or a template such as "
                "'{partition}@{offset} {key}'"
            )
        for name in names:
            top = name.split(".")[0].split("[")[0]
            if top not in known:
                raise TailUsageError(
                    f"--format: no field {top!r}; the fields are {', '.join(known)}"
                )


def run_tail(settings: Settings, options: TailOptions) -> int:
    topic = settings.dead_letter_topic if options.dead_letters else settings.clean_topic
    reader = None if options.dead_letters else RedemptionReader(settings.schema_registry_url, topic)
    out = console()
    printed = 0
    consumer = reading_consumer(settings, "tail")
    try:
        starts, ends = _range(consumer, topic, settings, options)
        for message in read_range(consumer, topic, starts, ends, options.follow):
            if reader is None:
                letter = DeadLetter.from_message(message)
                if not options.selection.matches(letter):
                    continue
                line = dead_letter_line(letter, options.raw_value or options.output == "value")
            else:
                line = clean_line(message, reader)
                if not _clean_selected(line, options.selection):
                    continue
            if options.keys and line["key"] not in options.keys:
                continue
            _print(out, line, options, message)
            printed += 1
            if options.max_records is not None and printed >= options.max_records:
                break
    finally:
        consumer.close()
    return 0


def _clean_selected(line: dict[str, Any], selection: DeadLetterFilter) -> bool:
    if selection.providers and line.get("provider") not in selection.providers:
        return False
    return not (selection.event_types and line.get("event_type") not in selection.event_types)


def _print(out, line: dict[str, Any], options: TailOptions, message: Message) -> None:
    if options.output == "json":
        text = orjson.dumps(line).decode()
        if out.is_terminal:
            out.print_json(text, indent=None)
            return
    elif options.output == "pretty":
        text = orjson.dumps(line, option=orjson.OPT_INDENT_2).decode()
    elif options.output == "value":
        if options.dead_letters:
            sys.stdout.buffer.write((message.value() or b"") + b"\n")
            sys.stdout.flush()
            return
        text = orjson.dumps(line["record"]).decode()
    else:
        text = options.output.format_map(_Missing(_blank_nones(line)))
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _blank_nones(value: Any) -> Any:
    """A template prints an absent value as empty, whatever its format spec."""
    if isinstance(value, dict):
        return {key: _blank_nones(item) for key, item in value.items()}
    return "" if value is None else value


class _Missing(dict):
    """A template's field that this record lacks (say, value_base64) prints as empty."""

    def __missing__(self, key: str) -> str:
        return ""


def _range(
    consumer: Consumer, topic: str, settings: Settings, options: TailOptions
) -> tuple[dict[int, int], dict[int, int] | None]:
    numbers = partitions_of(consumer, topic, settings)
    if options.partitions:
        missing = sorted(options.partitions - set(numbers))
        if missing:
            raise TailUsageError(
                f"--partition {', '.join(map(str, missing))}: {topic} has partitions "
                f"0..{max(numbers)}"
            )
        numbers = sorted(options.partitions)
    bounds = watermarks(consumer, topic, numbers)
    if options.since:
        starts = _offsets_at(consumer, topic, bounds, options.since)
    else:
        starts = {p: options.offset.start(low, high) for p, (low, high) in bounds.items()}
    if options.follow:
        return starts, None
    if options.until:
        return starts, _offsets_at(consumer, topic, bounds, options.until)
    return starts, {p: high for p, (_, high) in bounds.items()}


def _offsets_at(
    consumer: Consumer, topic: str, bounds: dict[int, tuple[int, int]], moment: datetime
) -> dict[int, int]:
    """Per partition, the first offset whose timestamp is at or after `moment` (the end
    when there is none)."""
    ms = int(moment.timestamp() * 1000)
    try:
        found = consumer.offsets_for_times(
            [TopicPartition(topic, p, ms) for p in bounds], timeout=METADATA_TIMEOUT_SECONDS
        )
    except KafkaException as exc:
        raise ReadFailed(f"cannot look up offsets by time in {topic}: {describe(exc)}") from None
    return {tp.partition: tp.offset if tp.offset >= 0 else bounds[tp.partition][1] for tp in found}


def clean_line(message: Message, reader: RedemptionReader) -> dict[str, Any]:
    headers = {n: (v or b"").decode("utf-8", "replace") for n, v in message.headers() or ()}
    try:
        record: Any = jsonable(reader.decode(message.value()))
        problem = None
    except Exception as exc:  # a record we cannot decode is shown, not fatal
        record, problem = None, f"cannot decode: {exc}"
    line = {
        **_position(message.topic(), message.partition(), message.offset(), message.timestamp()[1]),
        "provider": headers.get("provider"),
        "event_type": headers.get("event_type"),
        "event_id": headers.get("event_id"),
        "key": _text(message.key()),
        "record": record,
    }
    if problem:
        line["error"] = problem
    return line


def dead_letter_line(letter: DeadLetter, raw_value: bool) -> dict[str, Any]:
    facts = letter.facts
    line: dict[str, Any] = {
        **_position(letter.topic, letter.partition, letter.offset, letter.timestamp_ms),
        "reason": letter.reason,
        "provider": facts.get(dead_letter.PROVIDER),
        "event_type": letter.event_type,
        "field": facts.get(dead_letter.FIELD),
        "message": facts.get(dead_letter.CONNECT_EXCEPTION_MESSAGE),
        "failed_at": facts.get(dead_letter.FAILED_AT),
        "source": {
            "topic": facts.get(dead_letter.CONNECT_TOPIC),
            "partition": letter.source_partition,
            "offset": letter.source_offset,
        },
        # Set when this record was itself a replay that failed again: not a new failure.
        "replay_of": letter.replay_of,
        "key": _text(letter.key),
        "headers": [[n, _text(v)] for n, v in letter.original_headers],
    }
    if letter.value_omitted:
        line["value_omitted_bytes"] = parse_int(facts[dead_letter.VALUE_OMITTED_BYTES])
    if raw_value:
        try:
            line["value"] = None if letter.value is None else letter.value.decode("utf-8")
        except UnicodeDecodeError:
            line["value_base64"] = base64.b64encode(letter.value or b"").decode()
    return line


def _position(topic: str, partition: int, offset: int, timestamp_ms: int | None) -> dict:
    return {
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "timestamp": iso_utc(datetime.fromtimestamp(timestamp_ms / 1000, UTC))
        if timestamp_ms and timestamp_ms > 0
        else None,
    }


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", errors="replace")
