"""Reading dead letters back, for the operators' commands (`tail dead-letter`, `replay`):
what the service said about a record, the headers it arrived with, and which of them a
filter selects.

The service appends its own headers after the record's original ones, always starting
with `__connect.errors.topic` (see consumer/dead_letter.py). The last occurrence of that
header is where the service's block begins: everything before it is the original headers,
byte for byte, and only what follows it is believed. An upstream record that arrived
carrying `loyalty.error.reason` (or any other of our names) cannot pass for a rejection
reason; it stays one of its original headers.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from consumer import dead_letter
from consumer.errors import REJECTION_REASONS
from consumer.providers import PROVIDER_NAMES
from consumer.records import HeaderList, iso_utc

# Lineage a replay adds to the record it puts back on the raw topic.
REPLAY_OF = "loyalty.replay.of"
REPLAY_AT = "loyalty.replay.at"
REPLAY_ID = "loyalty.replay.id"
REPLAY_HEADERS = (REPLAY_OF, REPLAY_AT, REPLAY_ID)

# A dead letter of a record no provider recognised has no provider header; filters and
# tables call it this.
NO_PROVIDER = "unknown"
KNOWN_PROVIDERS: tuple[str, ...] = (*PROVIDER_NAMES, NO_PROVIDER)
KNOWN_REASONS: tuple[str, ...] = REJECTION_REASONS


def coordinates(topic: str, partition: int, offset: int) -> str:
    """How a record is named in lineage headers and messages: topic/partition@offset."""
    return f"{topic}/{partition}@{offset}"


@dataclass(frozen=True)
class DeadLetter:
    """One record of the dead-letter topic, read back."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    # The headers the record arrived with, in order, byte for byte.
    original_headers: tuple[tuple[str, bytes | None], ...]
    # The service's own headers, by name, decoded.
    facts: dict[str, str]

    @classmethod
    def read(
        cls,
        headers: HeaderList | None,
        topic: str = "",
        partition: int = -1,
        offset: int = -1,
        timestamp_ms: int | None = None,
        key: bytes | None = None,
        value: bytes | None = None,
    ) -> DeadLetter:
        headers = list(headers or ())
        start = len(headers)
        for index in range(len(headers) - 1, -1, -1):
            if headers[index][0] == dead_letter.CONNECT_TOPIC:
                start = index
                break
        facts = {
            name: header_value.decode("utf-8", errors="replace")
            for name, header_value in headers[start:]
            # The service writes every one of its headers, empty where it does not
            # apply: an empty value is no fact.
            if header_value
        }
        return cls(
            topic=topic,
            partition=partition,
            offset=offset,
            timestamp_ms=timestamp_ms,
            key=key,
            value=value,
            original_headers=tuple(headers[:start]),
            facts=facts,
        )

    @classmethod
    def from_message(cls, message) -> DeadLetter:  # a confluent_kafka.Message
        _, timestamp_ms = message.timestamp()
        return cls.read(
            message.headers(),
            topic=message.topic(),
            partition=message.partition(),
            offset=message.offset(),
            timestamp_ms=timestamp_ms if timestamp_ms and timestamp_ms > 0 else None,
            key=message.key(),
            value=message.value(),
        )

    @property
    def name(self) -> str:
        return coordinates(self.topic, self.partition, self.offset)

    @property
    def reason(self) -> str | None:
        return self.facts.get(dead_letter.REASON)

    @property
    def provider(self) -> str:
        return self.facts.get(dead_letter.PROVIDER, NO_PROVIDER)

    @property
    def event_type(self) -> str | None:
        return self.facts.get(dead_letter.EVENT_TYPE)

    @property
    def failed_at(self) -> datetime | None:
        return parse_time(self.facts.get(dead_letter.FAILED_AT))

    @property
    def source_partition(self) -> int | None:
        return parse_int(self.facts.get(dead_letter.CONNECT_PARTITION))

    @property
    def source_offset(self) -> int | None:
        return parse_int(self.facts.get(dead_letter.CONNECT_OFFSET))

    @property
    def value_omitted(self) -> bool:
        """Too large for the dead-letter topic: sent without its value, which only the
        raw topic still holds (at the source coordinates)."""
        return dead_letter.VALUE_OMITTED_BYTES in self.facts

    @property
    def replay_of(self) -> str | None:
        """The earlier dead letter this record was a replay of: it failed again."""
        found = None
        for name, header_value in self.original_headers:
            if name == REPLAY_OF and header_value is not None:
                found = header_value.decode("utf-8", errors="replace")
        return found

    def headers_for_replay(
        self, replay_id: str, replayed_at: datetime
    ) -> list[tuple[str, bytes | None]]:
        """The original headers, an earlier replay's lineage replaced by this one's."""
        return [
            *((n, v) for n, v in self.original_headers if n not in REPLAY_HEADERS),
            (REPLAY_OF, self.name.encode()),
            (REPLAY_AT, iso_utc(replayed_at).encode()),
            (REPLAY_ID, replay_id.encode()),
        ]


@dataclass(frozen=True)
class DeadLetterFilter:
    """Which dead letters to select; an empty criterion selects everything. Criteria
    combine with AND, the values of one criterion with OR. Source partition and offsets
    are the raw-topic coordinates the record was rejected at."""

    reasons: frozenset[str] = frozenset()
    providers: frozenset[str] = frozenset()
    event_types: frozenset[str] = frozenset()
    failed_after: datetime | None = None
    failed_before: datetime | None = None
    source_partitions: frozenset[int] = frozenset()
    source_offset_min: int | None = None
    source_offset_max: int | None = None

    def __post_init__(self) -> None:
        """Values that can select nothing are refused: a typo would otherwise look like
        'nothing to do'. ValueError says what is known."""
        unknown = sorted(self.reasons - set(KNOWN_REASONS))
        if unknown:
            raise ValueError(
                f"unknown reason {', '.join(unknown)}; known: {', '.join(KNOWN_REASONS)}"
            )
        unknown = sorted(self.providers - set(KNOWN_PROVIDERS))
        if unknown:
            raise ValueError(
                f"unknown provider {', '.join(unknown)}; known: {', '.join(KNOWN_PROVIDERS)}"
            )
        if self.failed_after and self.failed_before and self.failed_after >= self.failed_before:
            raise ValueError("--failed-after must be before --failed-before")
        if (
            self.source_offset_min is not None
            and self.source_offset_max is not None
            and self.source_offset_min > self.source_offset_max
        ):
            raise ValueError("--source-offset-from must not be after --source-offset-to")
        if any(p < 0 for p in self.source_partitions):
            raise ValueError("--source-partition must not be negative")

    def matches(self, letter: DeadLetter) -> bool:
        if self.reasons and letter.reason not in self.reasons:
            return False
        if self.providers and letter.provider not in self.providers:
            return False
        if self.event_types and letter.event_type not in self.event_types:
            return False
        if self.failed_after or self.failed_before:
            failed_at = letter.failed_at
            if failed_at is None:
                return False
            if self.failed_after and failed_at < self.failed_after:
                return False
            if self.failed_before and failed_at >= self.failed_before:
                return False
        if self.source_partitions and letter.source_partition not in self.source_partitions:
            return False
        if self.source_offset_min is not None or self.source_offset_max is not None:
            offset = letter.source_offset
            if offset is None:
                return False
            if self.source_offset_min is not None and offset < self.source_offset_min:
                return False
            if self.source_offset_max is not None and offset > self.source_offset_max:
                return False
        return True

    def digest(self) -> str:
        """A short stable name for the filter, for the replay's consumer group."""
        parts = [
            ",".join(sorted(self.reasons)),
            ",".join(sorted(self.providers)),
            ",".join(sorted(self.event_types)),
            iso_utc(self.failed_after) if self.failed_after else "",
            iso_utc(self.failed_before) if self.failed_before else "",
            ",".join(str(p) for p in sorted(self.source_partitions)),
            str(self.source_offset_min),
            str(self.source_offset_max),
        ]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:DIGEST_HEX_DIGITS]


# 48 bits of the filter's hash: collisions between the filters of one group are not a
# practical concern, and the group name stays readable.
DIGEST_HEX_DIGITS = 12


def parse_time(text: str | None) -> datetime | None:
    """ISO-8601; without an offset, UTC. None when absent or not a time."""
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_time_argument(text: str) -> datetime:
    """A command-line time (--failed-after, --since, ...): ISO-8601, UTC without an offset."""
    parsed = parse_time(text)
    if parsed is None:
        raise ValueError(f"not an ISO-8601 time: {text!r} (say 2026-03-01T10:00:00Z)")
    return parsed


def parse_int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None
