"""Checkpoints: make a stretch of outputs durable, then record the input positions.

One interface, two small implementations chosen once at start-up (the model is
quix-streams' Checkpoint and Kafka Streams' commit interval), so the loop never
branches on the guarantee:

- AtLeastOnce: wait until the producer has every output acknowledged (flush), then
  commit the input positions. An output that failed means no commit (a restart reads
  those records again); outputs not acknowledged yet, or a commit refused during a
  rebalance, keep the positions for the next checkpoint.
- ExactlyOnce: outputs go into a producer transaction, opened lazily with the first
  batch; the checkpoint sends the positions to the transaction with the consumer's
  group metadata (KIP-447) and commits it, so a read_committed reader sees each output
  once and only when its input is committed. A transaction the broker asks to abort is
  aborted and the partitions rewound to their committed offsets.

`commit` returns True when the positions are committed (or there was nothing to do).
Every call that can block is announced to the watchdog with its bound first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition

from consumer.errors import DeliveryFailed, ProducerFenced
from consumer.kafka_errors import (
    commit_waits_for_rebalance,
    committed_offsets_unreadable,
    coordinator_moving,
    describe,
    kafka_error,
    nothing_to_commit,
    transaction_call_failed,
    transaction_call_retriable,
    transaction_needs_abort,
)
from consumer.kafka_io import DeliveryReports
from consumer.metrics import Metrics
from consumer.watchdog import GRACE_SECONDS, Watchdog

log = logging.getLogger(__name__)

Positions = Mapping[tuple[str, int], int]

# How long a checkpoint waits for outstanding outputs to be acknowledged. Longer than a
# broker leader election; a flush that takes longer does not fail the checkpoint, it
# defers the commit to the next one (librdkafka's message.timeout.ms decides failure).
FLUSH_TIMEOUT_SECONDS = 20.0
# A synchronous offset commit has no timeout parameter in the client; the watchdog holds
# it to this (the broker's request timeout is 30 s).
COMMIT_BOUND_SECONDS = 40.0
# Exactly-once: how long one transaction call (init, begin, send offsets, commit, abort)
# may take, and how often a retriable failure of one is tried. The watchdog holds each
# call to this plus its grace, since send_offsets_to_transaction can ignore it.
TRANSACTION_CALL_SECONDS = 30.0
TRANSACTION_ATTEMPTS = 3
# Between two reads of the committed offsets while the group coordinator moves: a
# broker restart takes seconds, and each read is a round trip to it.
COORDINATOR_RETRY_SECONDS = 1.0


class Checkpoint(Protocol):
    def start(self) -> None:
        """Once, before the first batch."""

    def before_outputs(self) -> None:
        """Before the outputs of a batch are produced."""

    def commit(self, positions: Positions, final: bool) -> bool:
        """Outputs durable, then positions recorded. `final`: at a revocation or at
        shutdown, where the commit must be synchronous."""

    def partitions_lost(self, still_assigned: Collection[tuple[str, int]]) -> None:
        """Partitions were taken away without a revocation: what was produced for
        them since the last checkpoint must not be committed by this member."""

    def abandon(self) -> None:
        """The loop failed: commit nothing more, release what is open (best effort)."""


def _offsets(positions: Positions) -> list[TopicPartition]:
    return [
        TopicPartition(topic, partition, offset) for (topic, partition), offset in positions.items()
    ]


@dataclass
class _Clients:
    """What both checkpoints work with: the clients, their failure reports, the metrics
    and the watchdog every blocking call is announced to."""

    _consumer: Consumer
    _producer: Producer
    _reports: DeliveryReports
    _metrics: Metrics
    _watchdog: Watchdog


class AtLeastOnce(_Clients):
    def start(self) -> None:
        pass

    def before_outputs(self) -> None:
        pass

    def commit(self, positions: Positions, final: bool) -> bool:
        self._watchdog.expect("flushing the producer", FLUSH_TIMEOUT_SECONDS + GRACE_SECONDS)
        waiting = self._producer.flush(FLUSH_TIMEOUT_SECONDS)
        self._reports.raise_first_failure()
        if waiting:
            log.warning(
                "outputs not acknowledged yet; commit deferred",
                extra={"waiting": waiting, "flush_seconds": FLUSH_TIMEOUT_SECONDS},
            )
            return False
        if not positions:
            return True
        self._watchdog.expect("committing offsets", COMMIT_BOUND_SECONDS)
        # Synchronous, so that a commit refused by a rebalance under way (an illegal
        # generation) is known here and the positions are kept for the next checkpoint:
        # an asynchronous commit that fails quietly would leave a partition that gets
        # no more records uncommitted for good. One round trip a checkpoint.
        try:
            self._consumer.commit(offsets=_offsets(positions), asynchronous=False)
        except KafkaException as exc:
            if nothing_to_commit(kafka_error(exc)):
                return True
            if final:
                raise  # final_commit waits out a rebalance; a revocation logs it
            self._metrics.commit_errors.inc()
            log.warning(
                "commit refused; the positions are committed at the next checkpoint",
                extra={"error": describe(exc)},
            )
            return False
        return True

    def partitions_lost(self, still_assigned: Collection[tuple[str, int]]) -> None:
        pass  # the runner drops their positions; their outputs may be read again

    def abandon(self) -> None:
        pass  # nothing committed past the last checkpoint


@dataclass
class ExactlyOnce(_Clients):
    _transactional_id: str = ""
    # When the open transaction began (monotonic); None when none is open.
    _opened_at: float | None = None

    def start(self) -> None:
        self._call("init_transactions", self._producer.init_transactions, TRANSACTION_CALL_SECONDS)

    def before_outputs(self) -> None:
        if self._opened_at is None:
            self._call("begin_transaction", self._producer.begin_transaction)
            self._opened_at = time.monotonic()

    def commit(self, positions: Positions, final: bool) -> bool:
        if self._opened_at is None:
            return True
        try:
            if positions:
                self._call(
                    "send_offsets_to_transaction",
                    self._producer.send_offsets_to_transaction,
                    _offsets(positions),
                    self._consumer.consumer_group_metadata(),
                    TRANSACTION_CALL_SECONDS,
                )
            self._call(
                "commit_transaction", self._producer.commit_transaction, TRANSACTION_CALL_SECONDS
            )
        except _AbortNeeded as exc:
            log.warning("transaction aborted", extra={"error": str(exc)})
            self._abort(rewind=self._assignment())
            return False
        # A failed delivery makes the commit fail (abortable), so reaching here means
        # every output of the transaction was acknowledged.
        self._reports.raise_first_failure()
        self._metrics.transactions.labels("committed").inc()
        self._metrics.transaction_seconds.observe(time.monotonic() - self._opened_at)
        self._opened_at = None
        return True

    def partitions_lost(self, still_assigned: Collection[tuple[str, int]]) -> None:
        # The open transaction holds outputs of partitions now owned elsewhere.
        self._abort(rewind=still_assigned)

    def abandon(self) -> None:
        if self._opened_at is None:
            return
        self._opened_at = None
        try:
            self._watchdog.expect(
                "aborting the transaction", TRANSACTION_CALL_SECONDS + GRACE_SECONDS
            )
            self._producer.abort_transaction(TRANSACTION_CALL_SECONDS)
        except (KafkaException, SystemError) as exc:
            # Fenced or fatal: the producer is unusable; the transaction coordinator
            # aborts it when the next member with this transactional id starts.
            log.info("transaction left to the coordinator to abort", extra={"error": str(exc)})

    def _assignment(self) -> list[tuple[str, int]]:
        return [(tp.topic, tp.partition) for tp in self._consumer.assignment()]

    def _abort(self, rewind: Collection[tuple[str, int]]) -> None:
        """Abort the open transaction and move `rewind` back to the committed offsets,
        so the aborted records are processed again."""
        if self._opened_at is None:
            return
        self._opened_at = None
        self._metrics.transactions.labels("aborted").inc()
        self._call("abort_transaction", self._producer.abort_transaction, TRANSACTION_CALL_SECONDS)
        if not rewind:
            return
        partitions = [TopicPartition(topic, partition) for topic, partition in rewind]
        for tp in self._committed(partitions):
            if tp.offset < 0:
                tp.offset = OFFSET_BEGINNING  # nothing committed: read from the start
            self._consumer.seek(tp)
        log.info(
            "partitions rewound to their committed offsets", extra={"partitions": len(partitions)}
        )

    def _committed(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        """The committed offsets to rewind to. An abort is most often caused by a broker
        restart, after which the group coordinator refuses reads for a few seconds
        (not coordinator, still loading): read again until TRANSACTION_CALL_SECONDS have
        passed, then stop the service, which a restart rewinds just as well."""
        deadline = time.monotonic() + TRANSACTION_CALL_SECONDS
        while True:
            left = max(deadline - time.monotonic(), COORDINATOR_RETRY_SECONDS)
            self._watchdog.expect("reading committed offsets", left + GRACE_SECONDS)
            try:
                return self._consumer.committed(partitions, timeout=left)
            except KafkaException as exc:
                error = kafka_error(exc)
                if not coordinator_moving(error) or time.monotonic() >= deadline:
                    raise committed_offsets_unreadable(exc) from exc
                log.info("reading committed offsets retried", extra={"error": describe(exc)})
            time.sleep(COORDINATOR_RETRY_SECONDS)

    def _call(self, name: str, call: Callable[..., Any], *args: Any) -> Any:
        """One transaction call, bounded by the watchdog. Abortable errors become
        _AbortNeeded, fencing ProducerFenced, the rest KafkaFailure. A retriable error
        is retried a few times; one that persists (a transaction coordinator that does
        not answer after a broker restart) stops the service rather than hang it: the
        next producer with this transactional id aborts what this one left open."""
        for attempt in range(1, TRANSACTION_ATTEMPTS + 1):
            self._watchdog.expect(name, TRANSACTION_CALL_SECONDS + GRACE_SECONDS)
            try:
                return call(*args)
            except KafkaException as exc:
                error = kafka_error(exc)
                if transaction_needs_abort(error):
                    raise _AbortNeeded(f"{name}: {error.str()}") from exc
                if transaction_call_retriable(error) and attempt < TRANSACTION_ATTEMPTS:
                    log.info("transaction call retried", extra={"call": name, "error": error.str()})
                    continue
                failure = transaction_call_failed(name, error)
                if isinstance(failure, ProducerFenced):
                    log.error(
                        "fenced: another member uses this transactional id; stopping",
                        extra={"transactional_id": self._transactional_id, "error": error.str()},
                    )
                raise failure from exc
        raise AssertionError("unreachable")


class _AbortNeeded(Exception):
    """A transaction call failed in a way that aborting the transaction recovers from.
    Private on purpose: a signal from _call to ExactlyOnce.commit, which aborts and
    rewinds; it says what to do next, not what failed, so it is not in the tree of
    consumer/errors.py."""


def final_commit(
    checkpoint: Checkpoint, positions: Positions, deadline: float, serve: Callable[[], None]
) -> bool:
    """The commit at shutdown: a rebalance under way (a rolling deploy: a new member
    joins as this one stops) refuses commits until it completes, so serve it and try
    again until `deadline` (monotonic)."""
    while True:
        try:
            return checkpoint.commit(positions, final=True)
        except KafkaException as exc:
            error = kafka_error(exc)
            if nothing_to_commit(error):
                return True
            if not commit_waits_for_rebalance(error) or time.monotonic() >= deadline:
                log.error("final commit failed", extra={"error": error.str()})
                return False
            log.info("final commit waits for a rebalance", extra={"error": error.str()})
        serve()


__all__ = [
    "FLUSH_TIMEOUT_SECONDS",
    "AtLeastOnce",
    "Checkpoint",
    "DeliveryFailed",
    "ExactlyOnce",
    "final_commit",
]
