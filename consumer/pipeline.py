"""process(raw record) -> exactly one Outcome. Pure: no Kafka, no clock but the one
it is given, no I/O. The service, the offline command and the tests all call this.

Order of checks, cheapest and most fundamental first:
size -> nesting depth -> JSON -> provider -> signature -> event type (other events are ignored here)
-> the provider's raw schema -> normalisation -> lineage metadata.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping

import orjson

from consumer import __version__
from consumer.config import Settings
from consumer.errors import (
    ConfigError,
    InvalidJson,
    PayloadTooLarge,
    RecordError,
    UnknownEventType,
    UnknownProvider,
)
from consumer.providers import PROVIDERS, Provider, fields
from consumer.records import Accepted, Ignored, Outcome, RawRecord, Rejected, header_lookup
from consumer.schemas import (
    RawSchema,
    SchemaLibrary,
    json_type,
    package_schemas,
    schema_library,
)

DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024
# Webhook bodies nest three or four levels. Anything that walks a parsed body with
# recursion (fastavro's explanations, repr() in its messages, copy.deepcopy) fails near
# Python's recursion limit of 1000, and one such record would stop the service on every
# restart; 64 leaves any provider room for a deeper envelope and stays far below that.
MAX_NESTING_DEPTH = 64
# A JSON string, escapes included: outside strings, every '[' and '{' opens a level.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_A_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_OPENING = frozenset(b"[{")


class Pipeline:
    def __init__(
        self,
        *,
        secrets: Mapping[str, tuple[str, ...]] | None = None,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        providers: tuple[Provider, ...] = PROVIDERS,
        clock: Callable[[], float] = time.time,
        consumer_version: str = __version__,
        schemas: SchemaLibrary | None = None,
    ) -> None:
        self._secrets = dict(secrets or {})
        self._max_payload_bytes = max_payload_bytes
        self._providers = providers
        self._clock = clock
        self._consumer_version = consumer_version
        schemas = schemas or package_schemas()
        # Parsed once here, never per record.
        self._raw_schemas = {p.name: RawSchema(schemas.load(p.raw_schema_file)) for p in providers}
        unknown = sorted(set(self._secrets) - {p.name for p in providers})
        if unknown:
            variables = ", ".join(f"{name.upper()}_WEBHOOK_SECRET" for name in unknown)
            raise ConfigError(
                f"{variables}: webhook secret for unknown provider(s) {', '.join(unknown)}; "
                f"known: {', '.join(p.name for p in providers)}"
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> Pipeline:
        return cls(
            secrets=settings.webhook_secrets,
            max_payload_bytes=settings.max_payload_bytes,
            schemas=schema_library(settings.schema_dir),
        )

    def process(self, raw: RawRecord) -> Outcome:
        provider: Provider | None = None
        event_type: str | None = None
        try:
            value = raw.value
            if value is None:
                raise InvalidJson("record has no value (tombstone)")
            if len(value) > self._max_payload_bytes:
                raise PayloadTooLarge(
                    f"value is {len(value)} bytes, over the limit of {self._max_payload_bytes}"
                )
            body = _parse_object(value)
            headers = header_lookup(raw.headers)
            provider = self._recognise(headers, body)

            secrets = self._secrets.get(provider.name, ())
            if secrets:
                provider.verify_signature(secrets, headers, value)

            event_type = provider.event_type(headers, body)
            if event_type is None:
                raise UnknownEventType(f"no header or body field names the {provider.name} event")
            if event_type != provider.redemption_event:
                return Ignored(
                    provider=provider.name,
                    event_type=event_type,
                    event_type_label=_event_type_label(provider, event_type),
                )

            self._raw_schemas[provider.name].validate(body)
            record = provider.normalise(body, headers)
        except RecordError as exc:
            return Rejected(
                reason=exc.reason,
                message=exc.message,
                field=exc.field,
                provider=provider.name if provider else None,
                event_type=event_type,
                error_class=f"{type(exc).__module__}.{type(exc).__qualname__}",
                event_type_label=_event_type_label(provider, event_type),
            )

        record["provider_event_type"] = event_type
        record["metadata"] = {
            "source_topic": raw.topic,
            "source_partition": raw.partition,
            "source_offset": raw.offset,
            # Whole milliseconds, as timestamp-millis will store it: the record in hand
            # equals the record a reader decodes.
            "processed_at": fields.from_epoch_millis(int(self._clock() * 1000)),
            "signature_verified": True if secrets else None,
            "consumer_version": self._consumer_version,
        }
        return Accepted(record=record, provider=provider.name, event_type=event_type)

    def _recognise(self, headers: Mapping[str, str], body: dict) -> Provider:
        # Headers are set by the provider's HTTP client and are stronger evidence than
        # field names, which any JSON body may happen to carry.
        for provider in self._providers:
            if provider.recognises_headers(headers):
                return provider
        for provider in self._providers:
            if provider.recognises_body(body):
                return provider
        raise UnknownProvider("no provider header or body field recognised")


def _event_type_label(provider: Provider | None, event_type: str | None) -> str:
    """Low-cardinality metric label: only event types the provider documents pass."""
    if event_type is None:
        return "none"
    if provider is not None and event_type in provider.known_event_types:
        return event_type
    return "other"


def nesting_depth_exceeds(value: bytes, limit: int = MAX_NESTING_DEPTH) -> bool:
    """True when the JSON text nests arrays and objects deeper than `limit`, judged from
    the bytes before anything parses them. Bodies with at most `limit` brackets in all
    (every real webhook) are answered by two byte counts; only the others pay for a scan
    that is linear in their size, like parsing them would be. For text that is not JSON
    the answer does not matter: the parser refuses it either way."""
    if value.count(b"[") + value.count(b"{") <= limit:
        return False
    brackets = _JSON_STRING.sub(b"", value).translate(None, _NOT_A_BRACKET)
    depth = 0
    for bracket in brackets:
        if bracket in _OPENING:
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def _parse_object(value: bytes) -> dict:
    if nesting_depth_exceeds(value):
        # Refused like text the parser cannot read: no code after this point has to
        # walk arbitrarily deep attacker-shaped data.
        raise InvalidJson(f"arrays and objects nested deeper than {MAX_NESTING_DEPTH} levels")
    try:
        body = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        # orjson's message says what is wrong (bad UTF-8, where the syntax breaks) and
        # quotes no payload.
        raise InvalidJson(f"not UTF-8 JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidJson(f"JSON {json_type(body)} where an object was expected")
    return body
