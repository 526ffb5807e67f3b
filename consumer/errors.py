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
    │   ├── NormalizationError       reason normalization_error
    │   ├── OutputTooLarge           reason output_too_large: the canonical record does
    │   │                            not fit the clean topic (raised by the loop)
    │   ├── UndecodableRecord        reason undecodable_record: the Kafka client could not
    │   │                            decode the record or its batch (raised by the loop)
    │   └── InternalError            reason internal_error: processing raised an
    │                                unexpected exception, a bug (raised by the loop)
    ├── ConfigError                  settings that cannot work; raised at start-up
    ├── UnsupportedSchema            a schema feature the compiled codecs do not generate;
    │                                schemas.py falls back to fastavro (also a ValueError)
    ├── KafkaFailure                 the broker or client failed us; the service stops
    │   ├── DeliveryFailed           a produced record was not acknowledged
    │   ├── FinalCommitFailed        the commit at shutdown did not go through (exit 4)
    │   ├── ProducerFenced           exactly-once: a newer member took our transactional
    │   │                            id (exit 5)
    │   └── TopicUnavailable         an operator command's topic cannot be reached or
    │                                does not exist
    └── OperatorCommandError         a command run by a person (tail, replay, status,
        │                            local) cannot do what was asked: one line, exit 1
        ├── UsageError               arguments that cannot work together (exit 2)
        │   └── TailUsageError       tail's options contradict each other or name
        │                            nothing (also a ValueError)
        ├── ReadFailed               a topic range cannot be read (tail, replay, status)
        ├── ReplayFailed             replay cannot start or go on
        ├── LocalRunFailed           `local` cannot go on (in consumer.dev.local_job)
        └── LocalBrokerError         the local broker could not be provisioned or did
                                     not come up (in consumer.dev.local_broker; also a
                                     RuntimeError)

Only RecordError subclasses are dead-lettered. The pipeline raises the first eight from
the record's own content. The last three are the loop's: it wraps what went wrong around
the record (an unexpected exception while processing it, an output the clean topic
refuses, data the client cannot decode) so that one record never stops a partition for
good. An unexpected exception is a bug, not bad data: it is dead-lettered loudly as
InternalError (or, by setting, stops the service). Infrastructure failures (KafkaFailure)
still stop the service.

Every class is defined here except the two of the development package, which subclass
OperatorCommandError where they are used (runtime modules never import consumer.dev).
The modules that raise the others import them from here, so `consumer.tail.TailUsageError`
and the like keep working. One exception stays outside on purpose: checkpoint's private
_AbortNeeded, a signal inside ExactlyOnce that says "abort and rewind", not a failure.
tests/unit/test_exception_tree.py holds that every other exception class of the package
is in the tree.

Library errors become ours at the edge where the library is called, each with
`raise ... from exc` so the original stays in the traceback:
- orjson's JSONDecodeError -> InvalidJson, in pipeline._parse_object;
- fastavro's ValidationError -> SchemaViolation, in schemas.RawSchema;
- value parsing (timestamps, decimals, ids) -> NormalizationError, in providers/fields.py;
- confluent-kafka's KafkaException and KafkaError -> KafkaFailure / DeliveryFailed /
  ProducerFenced / TopicUnavailable / ConfigError, in kafka_errors: the one module that
  names KafkaError codes. The modules that call the client (kafka_io, checkpoint,
  runner, the operator commands) catch KafkaException there and ask kafka_errors what
  it means (stops the service? a rebalance under way? undecodable?) and what it becomes.
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


class OutputTooLarge(RecordError):
    """The canonical record would not fit the clean topic's size limit."""

    reason = "output_too_large"


class UndecodableRecord(RecordError):
    """The Kafka client could not decode the record or its batch (e.g. corrupt
    compression). The dead letter carries the coordinates, not the value."""

    reason = "undecodable_record"


class InternalError(RecordError):
    """Processing the record raised an unexpected exception (a bug). Dead-lettered so the
    partition moves on; the original exception is the __cause__."""

    reason = "internal_error"


# The reasons Pipeline.process can return, from the record's content alone.
PIPELINE_REJECTION_REASONS: tuple[str, ...] = tuple(
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
# The reasons only the loop gives, for what went wrong around the record.
LOOP_REJECTION_REASONS: tuple[str, ...] = tuple(
    cls.reason for cls in (OutputTooLarge, UndecodableRecord, InternalError)
)
# Every reason of the contract: the dead-letter header, the metric label, replay --reason.
REJECTION_REASONS: tuple[str, ...] = PIPELINE_REJECTION_REASONS + LOOP_REJECTION_REASONS


class ConfigError(LoyaltyConsumerError):
    """A setting is missing or malformed."""


class UnsupportedSchema(LoyaltyConsumerError, ValueError):
    """The schema uses a feature the compiler (avro_compiled.py) does not generate code
    for. Also a ValueError: the schema, a value, is what is wrong."""


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


class TopicUnavailable(KafkaFailure):
    """The brokers cannot be reached, or the topic does not exist; said in one line."""


class OperatorCommandError(LoyaltyConsumerError):
    """A command run by a person (tail, replay, status, local) cannot do what was asked;
    the message says why, in one line."""


class UsageError(OperatorCommandError):
    """Arguments that cannot work together; one line, exit status 2."""


class TailUsageError(UsageError, ValueError):
    """Options that contradict each other or name nothing; said in one line (exit 2)."""


class ReadFailed(OperatorCommandError):
    """Cannot read: the message says why, in one line."""


class ReplayFailed(OperatorCommandError):
    """The replay cannot start or go on; the message says why, in one line."""
