"""Headers of a dead-lettered record: the original headers byte for byte, then ours.

Where a meaning matches Kafka Connect's dead-letter context headers, Connect's names
are reused so existing DLQ tooling reads them; the rest are prefixed `loyalty.error.`.
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
# Set, with the raw value's size, only when the value was too large for the dead-letter
# topic and the record was sent without it.
VALUE_OMITTED_BYTES = "loyalty.error.value_omitted_bytes"
# Set, with the total size of the original headers (names and values), only when the
# record was too large even without its value and went without those headers too.
HEADERS_OMITTED_BYTES = "loyalty.error.headers_omitted_bytes"


def dead_letter_headers(
    raw: RawRecord, rejected: Rejected, failed_at: datetime, consumer_version: str
) -> HeaderList:
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
    ]
    return [*raw.headers, *((name, value.encode()) for name, value in added if value is not None)]
