"""The loop: consume a batch, process, produce, commit once outputs are acknowledged.

At-least-once (the default). An input offset is stored for commit only when every
output it caused (clean or dead-letter record) is acknowledged by the broker; ignored
records have no output and are done at once. librdkafka commits stored offsets in the
background. Before partitions are given up (revocation) and at shutdown the runner
commits synchronously itself, waiting out a rebalance in progress within the shutdown
deadline, so a rolling deploy does not hand already-delivered records to the next
owner. A failed delivery stops the service after committing what is safe: the record
is read again on restart, never skipped.

Exactly-once. Outputs and input offsets go into one producer transaction per
checkpoint (LOYALTY_CHECKPOINT_INTERVAL_MS or LOYALTY_CHECKPOINT_RECORDS, whichever
comes first; before a revocation; at shutdown), the offsets with the consumer's group
metadata (KIP-447), so a read_committed reader sees each output once and only when its
input is committed. An abortable error aborts the transaction and rewinds the assigned
partitions to their committed offsets; a fenced producer stops the service (exit 5).

Fixed order per iteration: serve delivery reports -> checkpoint (store offsets that
moved, or commit the transaction when due) -> consume a batch -> process and produce.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import cache, partial
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from consumer import __version__
from consumer.config import Settings
from consumer.dead_letter import HEADERS_OMITTED_BYTES, VALUE_OMITTED_BYTES, dead_letter_headers
from consumer.errors import DeliveryFailed, FinalCommitFailed, KafkaFailure, ProducerFenced
from consumer.kafka_io import Encoder, OffsetTracker, produce, stops_the_service, to_raw_record
from consumer.metrics import Metrics
from consumer.pipeline import Pipeline
from consumer.records import Accepted, Ignored, RawRecord, Rejected

log = logging.getLogger(__name__)

# On shutdown or revocation, how long to wait for in-flight records to be acknowledged.
# Longer than a broker leader election, shorter than Kubernetes' default 30 s grace.
FLUSH_TIMEOUT_SECONDS = 20.0
# Exit status when the shutdown deadline (Settings.shutdown_deadline_seconds) passed.
# The whole shutdown (batch, flush, final commit in close()) gets that long because
# librdkafka's final commit waits for the group coordinator without a bound, and an
# orchestrator would SIGKILL us anyway. Exiting loses nothing: uncommitted records are
# read again.
EXIT_SHUTDOWN_DEADLINE = 3
# Commit errors that mean "a rebalance is under way": wait for it to end and try again.
_REBALANCING = frozenset(
    (
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError.ILLEGAL_GENERATION,
        KafkaError._WAIT_COORD,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.NOT_COORDINATOR,
        KafkaError._TIMED_OUT,
    )
)
# While waiting out a rebalance at shutdown, how long each poll that serves it lasts.
REBALANCE_POLL_SECONDS = 0.2
# Time the final commit leaves for close() (leave the group) within the deadline.
CLOSE_RESERVE_SECONDS = 3.0
# Exactly-once: how long one transaction call (init, send offsets, commit) may take.
TRANSACTION_CALL_SECONDS = 30.0
TRANSACTION_ATTEMPTS = 3


class Runner:
    def __init__(
        self,
        settings: Settings,
        pipeline: Pipeline,
        consumer: Consumer,
        producer: Producer,
        encoder: Encoder,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._pipeline = pipeline
        self._consumer = consumer
        self._producer = producer
        self._encode = encoder
        self._metrics = metrics
        self._clock = clock
        self._tracker = OffsetTracker()
        self._assigned: set[tuple[str, int]] = set()
        self._delivery_failure: DeliveryFailed | None = None
        self._stop_requested = False
        self._stop_requested_at: float | None = None
        self._failed = False  # the loop ended on an exception
        self.last_poll_monotonic = time.monotonic()
        self._exactly_once = settings.exactly_once
        # Exactly-once: the open transaction's next input offset per partition.
        self._txn_positions: dict[tuple[str, int], int] = {}
        self._txn_started: float | None = None
        self._txn_records = 0
        # labels() takes a lock and hashes the label values on every call; the label sets
        # are few (closed sets), so each counter child is looked up once and kept.
        self._consumed_counter = cache(metrics.records_consumed.labels)
        self._outcome_counter = cache(metrics.outcomes.labels)
        self._clean_counter = cache(metrics.clean_records.labels)
        self._dead_letter_counter = cache(metrics.dead_letters.labels)

    # -- lifecycle ---------------------------------------------------------------

    def request_stop(self) -> None:
        """Safe from a signal handler: only sets a flag the loop checks."""
        if not self._stop_requested:
            self._stop_requested_at = time.monotonic()
        self._stop_requested = True

    @property
    def assigned_partitions(self) -> int:
        return len(self._assigned)

    @property
    def stop_requested(self) -> bool:
        return self._stop_requested

    def cluster_metadata(self, timeout: float) -> Any:
        """The raw topic's metadata through the consumer's connection, for the start-up
        check; raises KafkaException when no broker answers within `timeout`."""
        try:
            return self._consumer.list_topics(self._settings.raw_topic, timeout=timeout)
        finally:
            # Serve the clients' queued logs and error callbacks (rate-limited by then).
            self._consumer.poll(0)
            self._producer.poll(0)

    def run(self) -> None:
        self._consumer.subscribe(
            [self._settings.raw_topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        log.info(
            "consuming",
            extra={
                "topic": self._settings.raw_topic,
                "guarantee": self._settings.processing_guarantee,
            },
        )
        if self._exactly_once:
            self._transactional(self._producer.init_transactions, TRANSACTION_CALL_SECONDS)
        committed = False
        try:
            while not self._stop_requested:
                self._producer.poll(0)
                if self._delivery_failure is not None:
                    raise self._delivery_failure
                self._checkpoint(due_only=True)
                batch = self._consumer.consume(
                    self._settings.batch_size, self._settings.poll_timeout_seconds
                )
                self.last_poll_monotonic = time.monotonic()
                self._metrics.last_poll.set(time.time())
                if batch:
                    if self._exactly_once and self._txn_started is None:
                        self._begin_transaction()
                    self._process_batch(batch)
        except BaseException:
            self._failed = True
            raise
        finally:
            committed = self._shutdown()
        if self._delivery_failure is not None:
            raise self._delivery_failure
        if not committed:
            self._metrics.final_commit_failures.inc()
            raise FinalCommitFailed(
                "the final commit did not go through before the shutdown deadline; "
                "the next owner of those partitions re-reads what was not committed"
            )

    def _shutdown(self) -> bool:
        """Flush, commit what was delivered, leave the group. True when the final commit
        went through (or there was nothing to commit). Nested so that a client failing
        here (flush serves the producer's error callback, which may raise) still commits
        what was acknowledged and closes."""
        undelivered = 0
        committed = False
        try:
            undelivered = self._producer.flush(FLUSH_TIMEOUT_SECONDS)
        finally:
            pending = self._tracker.pending()
            try:
                if self._exactly_once:
                    if self._failed or self._delivery_failure is not None:
                        # Whatever broke may break the commit too: abort, best effort (a
                        # restarted member aborts it anyway, by fencing).
                        with contextlib.suppress(KafkaFailure, KafkaException):
                            self._abort_transaction(rewind=False)
                    else:
                        committed = self._commit_transaction()
                else:
                    self._store_commit_points()
                    committed = self._commit_through_rebalance()
            finally:
                # Revokes (on_revoke runs), leaves the group; at-least-once also commits
                # the stored offsets again, which is harmless.
                self._consumer.close()
        if undelivered:
            log.error(
                "stopped with undelivered records; their offsets were not committed",
                extra={"undelivered": undelivered},
            )
        log.info("stopped", extra={"unacknowledged": pending, "final_commit": committed})
        return committed or self._failed or self._delivery_failure is not None

    def _commit_through_rebalance(self) -> bool:
        """At-least-once: commit the stored offsets synchronously. A rebalance under way
        (a rolling deploy: a new member joins as this one stops) refuses commits until
        it completes, so serve it, with consumption paused, and try again until the
        shutdown deadline leaves just enough time to close."""
        started = self._stop_requested_at or time.monotonic()
        deadline = started + self._settings.shutdown_deadline_seconds - CLOSE_RESERVE_SECONDS
        while True:
            try:
                self._consumer.commit(asynchronous=False)
                return True
            except KafkaException as exc:
                error = exc.args[0]
                if error.code() == KafkaError._NO_OFFSET:
                    return True  # nothing stored since the last commit
                if error.code() not in _REBALANCING or time.monotonic() >= deadline:
                    self._metrics.commit_errors.inc()
                    log.error("final commit failed", extra={"error": error.str()})
                    return False
                log.info("final commit waits for a rebalance", extra={"error": error.str()})
            self._serve_rebalance()

    def _serve_rebalance(self) -> None:
        """Let librdkafka run a pending rebalance (its callbacks run inside consume)
        without taking new work: records that still arrive are left unprocessed and
        their offsets unstored, so the next owner reads them."""
        with contextlib.suppress(KafkaException):
            self._consumer.pause(self._consumer.assignment())
        self._consumer.consume(self._settings.batch_size, REBALANCE_POLL_SECONDS)

    # -- per record ----------------------------------------------------------------

    def _process_batch(self, batch: list[Message]) -> None:
        # Counters move once per batch and label set, not once per record; `finally`
        # keeps them right when a record stops the loop half-way.
        consumed: dict[str, int] = {}
        outcomes: dict[tuple[str, str, str, str], int] = {}
        try:
            with self._metrics.batch_seconds.time():
                self._process_records(batch, consumed, outcomes)
        finally:
            for topic, count in consumed.items():
                self._consumed_counter(topic).inc(count)
            for labels, count in outcomes.items():
                self._outcome_counter(*labels).inc(count)

    def _process_records(
        self,
        batch: list[Message],
        consumed: dict[str, int],
        outcomes: dict[tuple[str, str, str, str], int],
    ) -> None:
        for message in batch:
            error = message.error()
            if error is not None:
                self._on_consume_error(error)
                continue
            raw = to_raw_record(message)
            consumed[raw.topic] = consumed.get(raw.topic, 0) + 1
            self._tracker.start(raw.topic, raw.partition, raw.offset)
            if self._exactly_once:
                self._txn_positions[(raw.topic, raw.partition)] = raw.offset + 1
                self._txn_records += 1
            started = time.perf_counter()
            outcome = self._pipeline.process(raw)
            if isinstance(outcome, Accepted):
                self._produce_clean(raw, outcome)
            elif isinstance(outcome, Rejected):
                self._produce_dead_letter(raw, outcome)
            else:
                self._tracker.finish(raw.topic, raw.partition, raw.offset)
            self._metrics.record_seconds.observe(time.perf_counter() - started)
            labels = _outcome_labels(outcome)
            outcomes[labels] = outcomes.get(labels, 0) + 1

    def _produce_clean(self, raw: RawRecord, accepted: Accepted) -> None:
        occurred_at = accepted.record["occurred_at"].timestamp()
        self._produce(
            self._settings.clean_topic,
            key=accepted.key,
            value=self._encode(accepted.record),
            headers=[
                ("provider", accepted.provider.encode()),
                ("event_type", accepted.event_type.encode()),
                ("event_id", accepted.event_id.encode()),
            ],
            # One partial per record (this is every accepted record's callback).
            on_delivery=partial(self._clean_delivered, raw, accepted.provider, occurred_at),
        )

    def _produce_dead_letter(self, raw: RawRecord, rejected: Rejected) -> None:
        log.info(
            "record rejected",
            extra={
                "topic": raw.topic,
                "partition": raw.partition,
                "offset": raw.offset,
                "reason": rejected.reason,
                "field": rejected.field,
                "provider": rejected.provider,
            },
        )
        failed_at = datetime.fromtimestamp(self._clock(), UTC)
        headers = dead_letter_headers(raw, rejected, failed_at, __version__)
        without_value = partial(self._produce_dead_letter_without_value, raw, rejected, headers)
        try:
            self._produce(
                self._settings.dead_letter_topic,
                key=raw.key,
                value=raw.value,
                headers=headers,
                on_delivery=partial(self._dead_letter_delivered, raw, rejected, without_value),
            )
        except KafkaFailure as exc:
            if not _too_large(exc.__cause__):
                raise
            without_value()

    def _produce_dead_letter_without_value(
        self, raw: RawRecord, rejected: Rejected, headers: list, keep_headers: bool = True
    ) -> None:
        """A value too large for the dead-letter topic must not stop the service, or it
        would stop again on every restart. The record goes without its value, and a
        header says how large the value was; the raw topic still holds it. Headers can
        be as large as a value: if the record is still too large, the original headers
        are left out as well, and another header says how large they were."""
        omitted = str(len(raw.value or b"")).encode()
        sent = [*headers, (VALUE_OMITTED_BYTES, omitted)]
        without_headers = None
        if keep_headers:
            log.warning("dead-letter value too large; sent without it", extra=_position(raw))
            without_headers = partial(
                self._produce_dead_letter_without_value, raw, rejected, headers, False
            )
        else:
            log.warning(
                "dead letter too large without its value; sent without the original headers",
                extra=_position(raw),
            )
            original_size = sum(
                len(name.encode()) + len(value or b"") for name, value in raw.headers
            )
            sent = [
                *headers[len(raw.headers) :],
                (VALUE_OMITTED_BYTES, omitted),
                (HEADERS_OMITTED_BYTES, str(original_size).encode()),
            ]
        try:
            self._produce(
                self._settings.dead_letter_topic,
                key=raw.key,
                value=None,
                headers=sent,
                on_delivery=partial(self._dead_letter_delivered, raw, rejected, without_headers),
            )
        except KafkaFailure as exc:
            if without_headers is None or not _too_large(exc.__cause__):
                raise
            without_headers()

    def _dead_letter_delivered(
        self,
        raw: RawRecord,
        rejected: Rejected,
        smaller: Callable[[], None] | None,
        error: Any,
        message: Any,
    ) -> None:
        if error is not None and error.code() == KafkaError.MSG_SIZE_TOO_LARGE and smaller:
            smaller()
            return
        self._delivered(raw, partial(self._dead_letter_acked, rejected.reason), error, message)

    def _produce(self, topic: str, **message: Any) -> None:
        try:
            produce(
                self._producer,
                topic,
                on_queue_full=self._metrics.producer_queue_full.inc,
                **message,
            )
        except KafkaException as exc:
            # Refused outright (e.g. over message.max.bytes): not something a retry or a
            # dead letter fixes. Stop before committing past it.
            self._metrics.produce_errors.labels(topic).inc()
            raise KafkaFailure(f"producing to {topic} failed: {exc}") from exc

    def _delivered(
        self, raw: RawRecord, on_ack: Callable[[], None], error: KafkaError | None, message: Any
    ) -> None:
        if error is not None:
            self._metrics.delivery_errors.labels(message.topic()).inc()
            log.error(
                "delivery failed",
                extra={
                    "topic": raw.topic,
                    "partition": raw.partition,
                    "offset": raw.offset,
                    "output_topic": message.topic(),
                    "error": error.str(),
                },
            )
            if self._delivery_failure is None:
                self._delivery_failure = DeliveryFailed(
                    f"{message.topic()} did not acknowledge the output of "
                    f"{raw.topic}/{raw.partition}@{raw.offset}: {error.str()}"
                )
            return
        self._tracker.finish(raw.topic, raw.partition, raw.offset)
        on_ack()

    def _clean_delivered(
        self,
        raw: RawRecord,
        provider: str,
        occurred_at: float,
        error: KafkaError | None,
        message: Any,
    ) -> None:
        if error is not None:
            self._delivered(raw, _nothing, error, message)
            return
        self._tracker.finish(raw.topic, raw.partition, raw.offset)
        self._clean_counter(provider).inc()
        self._metrics.end_to_end_seconds.observe(max(0.0, self._clock() - occurred_at))

    def _dead_letter_acked(self, reason: str) -> None:
        self._dead_letter_counter(reason).inc()

    def _on_consume_error(self, error: KafkaError) -> None:
        self._metrics.consume_errors.labels(error.name()).inc()
        # A fatal error can reach the loop as code _FATAL with its fatal() flag unset
        # (seen: a static member fenced after a broker restart); the consumer is
        # unusable from then on: stop, and let a restart join afresh.
        if stops_the_service(error) or error.code() == KafkaError._FATAL:
            raise KafkaFailure(f"kafka consumer cannot continue: {error.str()} ({error.name()})")
        log.warning("consumer error", extra={"error": error.str(), "code": error.name()})

    # -- checkpoints ---------------------------------------------------------------------

    def _checkpoint(self, due_only: bool) -> None:
        if not self._exactly_once:
            self._store_commit_points()
            return
        if self._txn_started is None:
            return
        age_ms = (time.monotonic() - self._txn_started) * 1000
        due = (
            age_ms >= self._settings.checkpoint_interval_ms
            or self._txn_records >= self._settings.checkpoint_records
        )
        if due or not due_only:
            self._commit_transaction()

    def _begin_transaction(self) -> None:
        self._transactional(self._producer.begin_transaction)
        self._txn_started = time.monotonic()
        self._txn_records = 0

    def _commit_transaction(self) -> bool:
        """Commit the open transaction with its input offsets. True when committed (or
        none was open); False when it had to be aborted (the partitions are rewound)."""
        if self._txn_started is None:
            return True
        offsets = [TopicPartition(t, p, o) for (t, p), o in self._txn_positions.items()]
        try:
            if offsets:
                self._transactional(
                    self._producer.send_offsets_to_transaction,
                    offsets,
                    self._consumer.consumer_group_metadata(),
                    TRANSACTION_CALL_SECONDS,
                )
            self._transactional(self._producer.commit_transaction, TRANSACTION_CALL_SECONDS)
        except _AbortNeeded as exc:
            log.warning("transaction aborted", extra={"error": str(exc)})
            self._abort_transaction(rewind=True)
            return False
        if self._delivery_failure is not None:
            # The commit served a failed delivery report: nothing of it is committed
            # past the failure (the broker refused the transaction), so stop.
            raise self._delivery_failure
        self._metrics.transactions.labels("committed").inc()
        self._metrics.transaction_seconds.observe(time.monotonic() - self._txn_started)
        self._txn_positions.clear()
        self._txn_started = None
        # The transaction carried the offsets; the tracker's entries (all acknowledged:
        # the commit flushed) only count what is pending, so drop them, or they would
        # pile up for as long as the service runs.
        self._tracker.take_commit_points()
        return True

    def _abort_transaction(self, rewind: bool) -> None:
        """Abort the open transaction; with `rewind`, move the assigned partitions back to
        their committed offsets so the aborted records are processed again."""
        if self._txn_started is None:
            return
        self._txn_started = None
        self._txn_positions.clear()
        self._tracker.forget(TopicPartition(t, p) for t, p in list(self._assigned))
        self._metrics.transactions.labels("aborted").inc()
        try:
            self._producer.abort_transaction(TRANSACTION_CALL_SECONDS)
        except KafkaException as exc:
            raise self._translate(exc) from exc
        if rewind and self._assigned:
            partitions = [TopicPartition(t, p) for t, p in self._assigned]
            for tp in self._consumer.committed(partitions, timeout=TRANSACTION_CALL_SECONDS):
                if tp.offset < 0:
                    tp.offset = OFFSET_BEGINNING  # nothing committed: read from the start
                self._consumer.seek(tp)
            log.info("partitions rewound to their committed offsets")

    def _transactional(self, call: Callable[..., Any], *args: Any) -> Any:
        """Run one producer transaction call; translate its errors: abortable ones into
        _AbortNeeded, fencing into ProducerFenced, the rest into KafkaFailure. A retriable
        error is retried a few times; one that persists (seen: a transaction coordinator
        that never answers again after a broker restart) stops the service rather than
        hang it, and a restart recovers: the new producer with the same transactional.id
        aborts what this one left open."""
        for attempt in range(1, TRANSACTION_ATTEMPTS + 1):
            try:
                return call(*args)
            except KafkaException as exc:
                error = exc.args[0]
                if error.txn_requires_abort():
                    raise _AbortNeeded(error.str()) from exc
                if error.retriable() and not error.fatal() and attempt < TRANSACTION_ATTEMPTS:
                    log.info("transaction call retried", extra={"error": error.str()})
                    continue
                raise self._translate(exc) from exc
        raise AssertionError("unreachable")

    def _translate(self, exc: KafkaException) -> KafkaFailure:
        error = exc.args[0]
        if error.fatal() or error.code() in (
            KafkaError._FENCED,
            KafkaError.PRODUCER_FENCED,
            KafkaError.INVALID_PRODUCER_EPOCH,
        ):
            log.error(
                "fenced: another member uses this transactional id; stopping",
                extra={"transactional_id": self._settings.transactional_id},
            )
            return ProducerFenced(f"fenced ({error.str()})")
        return KafkaFailure(f"transaction failed: {error.str()}")

    # -- offsets and rebalances ------------------------------------------------------

    def _store_commit_points(self) -> None:
        # Revoked partitions are forgotten by the tracker before they could show up here.
        points = self._tracker.take_commit_points()
        if points:
            try:
                self._consumer.store_offsets(offsets=points)
            except KafkaException as exc:
                self._metrics.commit_errors.inc()
                raise KafkaFailure(f"storing offsets failed: {exc}") from exc

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned.update((tp.topic, tp.partition) for tp in partitions)
        self._metrics.assigned_partitions.set(len(self._assigned))
        self._metrics.rebalances.labels("assign").inc()
        log.info("partitions assigned", extra={"partitions": _names(partitions)})

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Finish what was produced for these partitions and commit it synchronously
        # before another member takes them over, so the new owner re-reads nothing that
        # was delivered. (librdkafka's own commit on revocation is asynchronous, and a
        # rebalance under way can refuse it.)
        if self._exactly_once:
            if self._txn_started is not None:
                self._commit_transaction()
        else:
            self._producer.flush(FLUSH_TIMEOUT_SECONDS)
            self._store_commit_points()
            revoked = {(tp.topic, tp.partition) for tp in partitions}
            try:
                consumer.commit(asynchronous=False)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError._NO_OFFSET:
                    self._metrics.commit_errors.inc()
                    log.warning(
                        "commit on revocation failed",
                        extra={"error": exc.args[0].str(), "partitions": len(revoked)},
                    )
        self._forget(partitions)
        self._metrics.rebalances.labels("revoke").inc()
        log.info("partitions revoked", extra={"partitions": _names(partitions)})

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Lost, not revoked: another member may already own them, so commit nothing.
        self._forget(partitions)
        if self._exactly_once:
            # The open transaction holds offsets of partitions now owned elsewhere.
            self._abort_transaction(rewind=True)
        self._metrics.rebalances.labels("lost").inc()
        log.warning("partitions lost", extra={"partitions": _names(partitions)})

    def _forget(self, partitions: list[TopicPartition]) -> None:
        self._tracker.forget(partitions)
        for tp in partitions:
            self._txn_positions.pop((tp.topic, tp.partition), None)
        self._assigned.difference_update((tp.topic, tp.partition) for tp in partitions)
        self._metrics.assigned_partitions.set(len(self._assigned))


class _AbortNeeded(Exception):
    """A transaction call failed in a way that aborting the transaction recovers from."""


def _position(raw: RawRecord) -> dict[str, Any]:
    return {"topic": raw.topic, "partition": raw.partition, "offset": raw.offset}


def _outcome_labels(outcome: Accepted | Ignored | Rejected) -> tuple[str, str, str, str]:
    """The loyalty_records_processed_total labels of an outcome."""
    if isinstance(outcome, Accepted):
        return ("accepted", outcome.provider, outcome.event_type, "")
    if isinstance(outcome, Ignored):
        return ("ignored", outcome.provider, outcome.event_type_label, "")
    return ("rejected", outcome.provider or "unknown", outcome.event_type_label, outcome.reason)


def _nothing() -> None:
    pass


def _names(partitions: list[TopicPartition]) -> str:
    return ",".join(f"{tp.topic}/{tp.partition}" for tp in partitions)


# The signals an orchestrator (SIGTERM) or a person (Ctrl-C) stops the service with.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def stop_on_signals(runner: Runner, deadline_seconds: float) -> Iterator[None]:
    """While inside, the first SIGTERM/SIGINT asks the runner to finish the batch, flush,
    commit and leave the group, within `deadline_seconds`; a second one kills the
    process at once, even inside a blocking librdkafka call. Neither loses anything:
    uncommitted records are read again. On the way out the previous handlers come back
    and the deadline is disarmed (the model is uvicorn's capture_signals). A captured
    signal is not re-raised to those handlers: the runner has already acted on it, and
    the caller's exit status says how the stop went."""
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    watchdog: threading.Timer | None = None

    def handle(signum: int, _frame: Any) -> None:
        nonlocal watchdog
        log.info("stop requested", extra={"signal": signum})
        # Python handlers run only between bytecodes, never while the loop waits in C;
        # the default disposition terminates the process wherever it is.
        for stop_signal in STOP_SIGNALS:
            signal.signal(stop_signal, signal.SIG_DFL)
        watchdog = threading.Timer(deadline_seconds, _exit_after_deadline, (deadline_seconds,))
        watchdog.daemon = True
        watchdog.start()
        runner.request_stop()

    for signum in STOP_SIGNALS:
        signal.signal(signum, handle)
    try:
        yield
    finally:
        if watchdog is not None:
            watchdog.cancel()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _exit_after_deadline(deadline_seconds: float) -> None:
    log.error("shutdown took too long; exiting", extra={"deadline_seconds": deadline_seconds})
    logging.shutdown()
    os._exit(EXIT_SHUTDOWN_DEADLINE)


def _too_large(error: BaseException | None) -> bool:
    return (
        isinstance(error, KafkaException) and error.args[0].code() == KafkaError.MSG_SIZE_TOO_LARGE
    )
