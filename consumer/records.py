"""The data that flows through the pipeline: one raw record in, one outcome out."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# Kafka headers as confluent-kafka hands them over: ordered, names may repeat, values
# are bytes or None. Kept exactly as received so a dead-lettered record can carry them
# on byte for byte.
HeaderList = Sequence[tuple[str, bytes | None]]


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One record of the raw topic, decoupled from the Kafka client's Message type."""

    value: bytes | None
    headers: HeaderList = ()
    topic: str = ""
    partition: int = -1
    offset: int = -1
    timestamp_ms: int | None = None
    key: bytes | None = None


def header_lookup(headers: HeaderList) -> dict[str, str]:
    """Header values by lower-cased name, decoded as UTF-8 (HTTP header names are
    case-insensitive). When a name repeats, the first occurrence wins, as the upstream
    receiver saw it first."""
    found: dict[str, str] = {}
    for name, value in headers:
        lowered = name.lower()
        if lowered in found or value is None:
            continue
        found[lowered] = value.decode("utf-8", errors="replace")
    return found


@dataclass(frozen=True, slots=True)
class Accepted:
    """A redemption, normalised: `record` matches schemas/loyalty_redemption.avsc."""

    record: Mapping[str, Any]
    provider: str
    event_type: str

    @property
    def key(self) -> bytes:
        return self.record["customer"]["shopify_customer_id"].encode()

    @property
    def event_id(self) -> str:
        return self.record["event_id"]


@dataclass(frozen=True, slots=True)
class Ignored:
    """Not a redemption (another event of a known provider): counted, not forwarded."""

    provider: str
    event_type: str
    reason: str = "not_a_redemption"
    # The event type as a metric label: the event type when the provider documents it,
    # else 'other' (the header is free text any sender controls).
    event_type_label: str = dataclasses.field(default="other", compare=False)


@dataclass(frozen=True, slots=True)
class Rejected:
    """Cannot be accepted: goes to the dead-letter topic with the contract's reason."""

    reason: str
    message: str
    field: str | None = None
    provider: str | None = None
    event_type: str | None = None
    error_class: str = dataclasses.field(default="", compare=False)
    # As on Ignored; 'none' when no event type was found.
    event_type_label: str = dataclasses.field(default="none", compare=False)


Outcome = Accepted | Ignored | Rejected


def iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and a 'Z', as the offline command and the
    dead-letter headers print timestamps."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def jsonable(value: Any) -> Any:
    """A decoded record for JSON output: timestamps as iso_utc strings, the rest as is."""
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [jsonable(item) for item in value]
    return value
