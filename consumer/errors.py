"""The exception tree.

    LoyaltyConsumerError
    ├── RecordError                  bad input data; becomes a Rejected outcome
    │   ├── InvalidJson              reason invalid_json
    │   ├── PayloadTooLarge          reason payload_too_large
    │   ├── UnknownProvider          reason unknown_provider
    │   ├── UnknownEventType         reason unknown_event_type
    │   ├── SchemaViolation          reason schema_violation
    │   ├── SignatureMissing         reason signature_missing
    │   ├── SignatureInvalid         reason signature_invalid
    │   └── NormalizationError       reason normalization_error
    ├── ConfigError                  settings that cannot work; raised at start-up
    └── KafkaFailure                 the broker or client failed us; the service stops
        ├── DeliveryFailed           a produced record was not acknowledged
        ├── FinalCommitFailed        the commit at shutdown did not go through (exit 4)
        └── ProducerFenced           exactly-once: a newer member took our transactional
                                     id (exit 5)

Only RecordError subclasses are dead-lettered. Anything else that escapes the pipeline is
a bug or an outage, and the service stops rather than quietly routing good data to the
dead-letter topic.

Library errors become ours at the edge where the library is called, each with
`raise ... from exc` so the original stays in the traceback:
- orjson's JSONDecodeError -> InvalidJson, in pipeline._parse_object;
- fastavro's ValidationError -> SchemaViolation, in schemas.RawSchema;
- value parsing (timestamps, decimals, ids) -> NormalizationError, in providers/fields.py;
- confluent-kafka's KafkaException and KafkaError -> KafkaFailure / DeliveryFailed, in
  runner.Runner (produce, delivery reports, consume errors, offset storage).
"""

from __future__ import annotations


class LoyaltyConsumerError(Exception):
    """Root of every error this package raises on purpose."""


class RecordError(LoyaltyConsumerError):
    """A raw record we cannot accept. `reason` is the contract's rejection reason."""

    reason: str = "record_error"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidJson(RecordError):
    reason = "invalid_json"


class PayloadTooLarge(RecordError):
    reason = "payload_too_large"


class UnknownProvider(RecordError):
    reason = "unknown_provider"


class UnknownEventType(RecordError):
    reason = "unknown_event_type"


class SchemaViolation(RecordError):
    reason = "schema_violation"


class SignatureMissing(RecordError):
    reason = "signature_missing"


class SignatureInvalid(RecordError):
    reason = "signature_invalid"


class NormalizationError(RecordError):
    reason = "normalization_error"


REJECTION_REASONS: tuple[str, ...] = tuple(
    cls.reason
    for cls in (
        InvalidJson,
        PayloadTooLarge,
        UnknownProvider,
        UnknownEventType,
        SchemaViolation,
        SignatureMissing,
        SignatureInvalid,
        NormalizationError,
    )
)


class ConfigError(LoyaltyConsumerError):
    """A setting is missing or malformed."""


class KafkaFailure(LoyaltyConsumerError):
    """The Kafka client reported an error the service cannot work around."""

    exit_status = 1


class DeliveryFailed(KafkaFailure):
    """The broker did not acknowledge a produced record; its input offset stays uncommitted."""


class FinalCommitFailed(KafkaFailure):
    """Everything was delivered but the last offsets could not be committed before the
    shutdown deadline: those records will be processed again by the next owner."""

    exit_status = 4


class ProducerFenced(KafkaFailure):
    """Exactly-once: another producer with our transactional.id started (a restarted or
    duplicated member). This one must stop at once; its open transaction is aborted."""

    exit_status = 5
