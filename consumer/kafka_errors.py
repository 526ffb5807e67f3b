"""Where confluent-kafka's errors become ours: the one module that knows what a client
error code means for the service, and that turns KafkaException and KafkaError into the
package's exceptions (consumer/errors.py).

The other modules catch KafkaException where they call the client, then ask here: what
the error means (`stops_the_service`, `commit_waits_for_rebalance`, `is_undecodable`,
...) and which of our exceptions it becomes for what they were doing
(`client_cannot_continue`, `delivery_failed`, `transaction_call_failed`, ...). None of
them names a KafkaError code, so a code's meaning is decided once and the tests of this
module hold it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from confluent_kafka import KafkaError, KafkaException

from consumer.errors import (
    ConfigError,
    DeliveryFailed,
    KafkaFailure,
    ProducerFenced,
    TopicUnavailable,
)

# Errors that no retry cures: the credentials, the trusted CA or the ACLs are wrong.
# librdkafka would retry them forever while the service looked alive and did nothing,
# so they stop the service like librdkafka's own fatal errors do.
STOPPING_ERRORS = frozenset(
    (
        KafkaError._AUTHENTICATION,
        KafkaError._SSL,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    )
)
# Commit errors that mean "a rebalance is under way": the final commit waits for it.
REBALANCING = frozenset(
    (
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError.ILLEGAL_GENERATION,
        KafkaError._WAIT_COORD,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.NOT_COORDINATOR,
        KafkaError._TIMED_OUT,
    )
)
# Errors of a request to the group coordinator while it moves or loads its groups (a
# broker restart): the same request a moment later goes through.
COORDINATOR_MOVING = frozenset(
    (
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError._WAIT_COORD,
        KafkaError._TIMED_OUT,
        KafkaError._TRANSPORT,
    )
)
# Consume errors that mean the client could not decode what the broker sent (a corrupt
# or undecompressable batch, an unknown codec). librdkafka reports them again on every
# fetch without moving on, which would stall the partition for good.
UNDECODABLE = frozenset(
    (KafkaError._BAD_COMPRESSION, KafkaError._BAD_MSG, KafkaError._NOT_IMPLEMENTED)
)
# Exactly-once: another producer took our transactional id, so this one may not write.
FENCED = frozenset(
    (KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH)
)


# -- what an error means ------------------------------------------------------------


def kafka_error(exc: KafkaException) -> KafkaError:
    """The KafkaError a KafkaException carries."""
    return exc.args[0]


def describe(exc: KafkaException) -> str:
    """The client's own sentence for the failure. Some calls raise KafkaException with a
    plain message instead of a KafkaError, so both are read."""
    if exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0].str()
    return str(exc)


def stops_the_service(error: KafkaError) -> bool:
    return error.fatal() or error.code() in STOPPING_ERRORS


def stops_the_consumer(error: KafkaError) -> bool:
    """A consume error after which the consumer is unusable. A fatal error can reach the
    loop as code _FATAL with its fatal() flag unset (seen: a static member fenced after
    a broker restart), so that code counts as fatal too: a restart joins afresh."""
    return stops_the_service(error) or error.code() == KafkaError._FATAL


def coordinator_moving(error: KafkaError) -> bool:
    return error.code() in COORDINATOR_MOVING


def is_undecodable(error: KafkaError) -> bool:
    return error.code() in UNDECODABLE


def is_end_of_partition(error: KafkaError) -> bool:
    """Not a failure: a reader with enable.partition.eof has reached the end."""
    return error.code() == KafkaError._PARTITION_EOF


def topic_already_exists(error: KafkaError) -> bool:
    return error.code() == KafkaError.TOPIC_ALREADY_EXISTS


def nothing_to_commit(error: KafkaError) -> bool:
    """The client refuses a commit with no new offsets; for a checkpoint that is done."""
    return error.code() == KafkaError._NO_OFFSET


def commit_waits_for_rebalance(error: KafkaError) -> bool:
    return error.code() in REBALANCING


def transaction_needs_abort(error: KafkaError) -> bool:
    """Aborting the open transaction recovers from it (the records are read again)."""
    return error.txn_requires_abort()


def transaction_call_retriable(error: KafkaError) -> bool:
    return error.retriable() and not error.fatal()


def is_fenced(error: KafkaError) -> bool:
    return error.fatal() or error.code() in FENCED


# -- what it becomes ----------------------------------------------------------------

# A property name in librdkafka's refusal of a configuration.
_QUOTED = re.compile(r'"([^"]+)"')


def client_cannot_continue(client: str, error: KafkaError) -> KafkaFailure:
    """A client (`consumer`, `producer`) reported an error that stops the service."""
    return KafkaFailure(f"kafka {client} cannot continue: {error.str()} ({error.name()})")


def delivery_failed(topic: str, error: KafkaError) -> DeliveryFailed:
    return DeliveryFailed(
        f"{topic} did not acknowledge a record: {error.str()}; the inputs since the "
        "last checkpoint are read again on restart"
    )


def produce_refused(topic: str, exc: KafkaException) -> KafkaFailure:
    """produce() refused the record outright: no retry or dead letter fixes that."""
    return KafkaFailure(f"producing to {topic} failed: {exc}")


def transaction_call_failed(call: str, error: KafkaError) -> KafkaFailure:
    """A transaction call failed for good: fenced (ProducerFenced, exit 5) or not."""
    if is_fenced(error):
        return ProducerFenced(f"fenced ({error.str()})")
    return KafkaFailure(f"transaction call {call} failed: {error.str()}")


def committed_offsets_unreadable(exc: KafkaException) -> KafkaFailure:
    """The committed offsets to rewind to after an abort could not be read."""
    return KafkaFailure(f"reading the committed offsets to rewind to failed: {describe(exc)}")


def topic_unreachable(bootstrap: str | None, exc: KafkaException) -> TopicUnavailable:
    return TopicUnavailable(f"cannot reach the brokers at {bootstrap}: {describe(exc)}")


def configuration_refused(
    exc: KafkaException, client: str, variable_named: Callable[[str], str | None]
) -> ConfigError:
    """librdkafka refused a client's configuration. Its message quotes the property;
    `variable_named(property)` gives the environment variable that set it, if any, so
    the error names what the operator has to change."""
    text = describe(exc)
    named = (variable_named(quoted) for quoted in _QUOTED.findall(text))
    variable = next((name for name in named if name), None)
    if variable:
        return ConfigError(f"{variable}: {text}")
    return ConfigError(f"the {client} refused its configuration: {text}")
