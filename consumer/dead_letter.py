"""Headers of a dead-lettered record: the original headers byte for byte, then ours.

Where a meaning matches Kafka Connect's dead-letter context headers, Connect's names
are reused so existing DLQ tooling reads them; the rest are prefixed `loyalty.error.`.

The raw record's headers come from strangers and may carry these very names. So the
service writes every one of its headers on every dead letter, with an empty value where
it does not apply, after the original ones: a reader takes the last occurrence of each
name, which is always the service's own, and an empty value means "not applicable".
"""

from __future__ import annotations

from datetime import datetime

from consumer.records import HeaderList, RawRecord, Rejected, iso_utc

CONNECT_TOPIC = "__connect.errors.topic"
CONNECT_PARTITION = "__connect.errors.partition"
CONNECT_OFFSET = "__connect.errors.offset"
CONNECT_EXCEPTION_CLASS = "__connect.errors.exception.class.name"
CONNECT_EXCEPTION_MESSAGE = "__connect.errors.exception.message"
REASON = "loyalty.error.reason"
FIELD = "loyalty.error.field"
PROVIDER = "loyalty.error.provider"
EVENT_TYPE = "loyalty.error.event_type"
FAILED_AT = "loyalty.error.failed_at"
CONSUMER_VERSION = "loyalty.error.consumer_version"
# The raw value's size when the value was too large for the dead-letter topic and the
# record was sent without it; empty otherwise.
VALUE_OMITTED_BYTES = "loyalty.error.value_omitted_bytes"
# The total size of the original headers (names and values) when the record was too
# large even without its value and went without those headers too; empty otherwise.
HEADERS_OMITTED_BYTES = "loyalty.error.headers_omitted_bytes"


def dead_letter_headers(
    raw: RawRecord,
    rejected: Rejected,
    failed_at: datetime,
    consumer_version: str,
    *,
    value_omitted_bytes: int | None = None,
    headers_omitted_bytes: int | None = None,
) -> HeaderList:
    """The original headers byte for byte, then every header of SERVICE_HEADERS once.
    With `headers_omitted_bytes` (the record was too large even without its value) the
    original headers are left out and that header says how large they were."""
    added = [
        (CONNECT_TOPIC, raw.topic),
        (CONNECT_PARTITION, str(raw.partition)),
        (CONNECT_OFFSET, str(raw.offset)),
        (CONNECT_EXCEPTION_CLASS, rejected.error_class),
        (CONNECT_EXCEPTION_MESSAGE, rejected.message),
        (REASON, rejected.reason),
        (FIELD, rejected.field),
        (PROVIDER, rejected.provider),
        (EVENT_TYPE, rejected.event_type),
        (FAILED_AT, iso_utc(failed_at)),
        (CONSUMER_VERSION, consumer_version),
        (VALUE_OMITTED_BYTES, _optional_number(value_omitted_bytes)),
        (HEADERS_OMITTED_BYTES, _optional_number(headers_omitted_bytes)),
    ]
    original = raw.headers if headers_omitted_bytes is None else ()
    return [*original, *((name, (value or "").encode()) for name, value in added)]


def _optional_number(number: int | None) -> str | None:
    return None if number is None else str(number)


# Every header the service writes on a dead letter, in the order it writes them.
SERVICE_HEADERS: tuple[str, ...] = (
    CONNECT_TOPIC,
    CONNECT_PARTITION,
    CONNECT_OFFSET,
    CONNECT_EXCEPTION_CLASS,
    CONNECT_EXCEPTION_MESSAGE,
    REASON,
    FIELD,
    PROVIDER,
    EVENT_TYPE,
    FAILED_AT,
    CONSUMER_VERSION,
    VALUE_OMITTED_BYTES,
    HEADERS_OMITTED_BYTES,
)
