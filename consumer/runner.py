"""The loop: consume a batch, process, produce, store offsets once outputs are acked.

At-least-once. An input offset is stored for commit only when every output it caused
(clean or dead-letter record) is acknowledged by the broker; ignored records have no
output and are done at once. librdkafka commits stored offsets in the background, and
again itself when partitions are revoked and when the consumer closes, so revocation
and shutdown only flush and store. A failed delivery stops the service after storing
what is safe: the record is read again on restart, never skipped.

Fixed order per iteration: serve delivery reports -> store offsets that moved ->
consume a batch -> process and produce each record.
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
from functools import partial
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from consumer import __version__
from consumer.config import Settings
from consumer.dead_letter import HEADERS_OMITTED_BYTES, VALUE_OMITTED_BYTES, dead_letter_headers
from consumer.errors import DeliveryFailed, KafkaFailure
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
        self.last_poll_monotonic = time.monotonic()

    # -- lifecycle ---------------------------------------------------------------

    def request_stop(self) -> None:
        """Safe from a signal handler: only sets a flag the loop checks."""
        self._stop_requested = True

    @property
    def assigned_partitions(self) -> int:
        return len(self._assigned)

    def run(self) -> None:
        self._consumer.subscribe(
            [self._settings.raw_topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        log.info("consuming", extra={"topic": self._settings.raw_topic})
        try:
            while not self._stop_requested:
                self._producer.poll(0)
                if self._delivery_failure is not None:
                    raise self._delivery_failure
                self._store_commit_points()
                batch = self._consumer.consume(
                    self._settings.batch_size, self._settings.poll_timeout_seconds
                )
                self.last_poll_monotonic = time.monotonic()
                self._metrics.last_poll.set(time.time())
                if batch:
                    self._process_batch(batch)
        finally:
            self._shutdown()
        if self._delivery_failure is not None:
            raise self._delivery_failure

    def _shutdown(self) -> None:
        # Nested so that a client failing here (flush serves the producer's error
        # callback, which may raise) still stores what was acknowledged and closes.
        undelivered = 0
        try:
            undelivered = self._producer.flush(FLUSH_TIMEOUT_SECONDS)
        finally:
            pending = self._tracker.pending()
            try:
                self._store_commit_points()
            finally:
                # Revokes (on_revoke runs), commits the stored offsets, leaves the group.
                self._consumer.close()
        if undelivered:
            log.error(
                "stopped with undelivered records; their offsets were not committed",
                extra={"undelivered": undelivered},
            )
        log.info("stopped", extra={"unacknowledged": pending})

    # -- per record ----------------------------------------------------------------

    def _process_batch(self, batch: list[Message]) -> None:
        with self._metrics.batch_seconds.time():
            for message in batch:
                error = message.error()
                if error is not None:
                    self._on_consume_error(error)
                    continue
                raw = to_raw_record(message)
                self._metrics.records_consumed.labels(raw.topic).inc()
                self._tracker.start(raw.topic, raw.partition, raw.offset)
                started = time.perf_counter()
                outcome = self._pipeline.process(raw)
                if isinstance(outcome, Accepted):
                    self._produce_clean(raw, outcome)
                elif isinstance(outcome, Rejected):
                    self._produce_dead_letter(raw, outcome)
                else:
                    self._tracker.finish(raw.topic, raw.partition, raw.offset)
                self._metrics.record_seconds.observe(time.perf_counter() - started)
                self._count(outcome)

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
            on_delivery=partial(
                self._delivered, raw, partial(self._clean_acked, accepted.provider, occurred_at)
            ),
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

    def _clean_acked(self, provider: str, occurred_at: float) -> None:
        self._metrics.clean_records.labels(provider).inc()
        self._metrics.end_to_end_seconds.observe(max(0.0, self._clock() - occurred_at))

    def _dead_letter_acked(self, reason: str) -> None:
        self._metrics.dead_letters.labels(reason).inc()

    def _count(self, outcome: Accepted | Ignored | Rejected) -> None:
        if isinstance(outcome, Accepted):
            labels = ("accepted", outcome.provider, outcome.event_type, "")
        elif isinstance(outcome, Ignored):
            labels = ("ignored", outcome.provider, outcome.event_type_label, "")
        else:
            labels = (
                "rejected",
                outcome.provider or "unknown",
                outcome.event_type_label,
                outcome.reason,
            )
        self._metrics.outcomes.labels(*labels).inc()

    def _on_consume_error(self, error: KafkaError) -> None:
        self._metrics.consume_errors.labels(error.name()).inc()
        if stops_the_service(error):
            raise KafkaFailure(f"kafka consumer cannot continue: {error.str()} ({error.name()})")
        log.warning("consumer error", extra={"error": error.str(), "code": error.name()})

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
        # Finish what was produced for these partitions and store it; librdkafka commits
        # stored offsets of revoked partitions before another member takes them over,
        # so the new owner re-reads as little as possible.
        self._producer.flush(FLUSH_TIMEOUT_SECONDS)
        self._store_commit_points()
        self._forget(partitions)
        self._metrics.rebalances.labels("revoke").inc()
        log.info("partitions revoked", extra={"partitions": _names(partitions)})

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Lost, not revoked: another member may already own them, so commit nothing.
        self._forget(partitions)
        self._metrics.rebalances.labels("lost").inc()
        log.warning("partitions lost", extra={"partitions": _names(partitions)})

    def _forget(self, partitions: list[TopicPartition]) -> None:
        self._tracker.forget(partitions)
        self._assigned.difference_update((tp.topic, tp.partition) for tp in partitions)
        self._metrics.assigned_partitions.set(len(self._assigned))


def _position(raw: RawRecord) -> dict[str, Any]:
    return {"topic": raw.topic, "partition": raw.partition, "offset": raw.offset}


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
