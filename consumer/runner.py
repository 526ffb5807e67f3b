"""The loop: consume a batch, process it, produce the outputs; checkpoint now and then.

    while not stopping:
        serve the producer's (failure-only) delivery reports
        checkpoint when due (LOYALTY_CHECKPOINT_INTERVAL_MS / _RECORDS)
        consume a batch; tell the watchdog the loop is alive
        process each record into one outcome and produce its output

A checkpoint (consumer/checkpoint.py) makes the outputs since the last one durable and
then records the input positions: at-least-once flushes and commits the offsets,
exactly-once sends them to the transaction and commits it. Checkpoints also run before
partitions are revoked and at shutdown. Nothing is tracked per record but the next
position of its partition, and nothing is committed past an output that failed.

Every record ends in exactly one outcome. A bug while processing one record (an
unexpected exception) makes it a dead letter `internal_error` and the loop goes on
(LOYALTY_ON_INTERNAL_ERROR=stop stops instead); an output too large for its topic
becomes a dead letter `output_too_large`; a record the client cannot decode is retried
a few times, then becomes a dead letter `undecodable_record` naming its coordinates.
Infrastructure failures (a refused produce, a failed delivery, fencing, authorization)
stop the service: a restart reads again from the last checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from functools import partial
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from consumer import __version__
from consumer.checkpoint import Checkpoint, final_commit
from consumer.config import Settings
from consumer.dead_letter import dead_letter_headers
from consumer.errors import (
    FinalCommitFailed,
    InternalError,
    KafkaFailure,
    OutputTooLarge,
    UndecodableRecord,
)
from consumer.kafka_errors import (
    client_cannot_continue,
    describe,
    is_undecodable,
    produce_refused,
    stops_the_consumer,
)
from consumer.kafka_io import DeliveryReports, produce, record_size, to_raw_record
from consumer.metrics import Metrics
from consumer.pipeline import Pipeline
from consumer.records import Accepted, HeaderList, Ignored, RawRecord, Rejected
from consumer.watchdog import EXIT_SHUTDOWN_DEADLINE, GRACE_SECONDS, Watchdog

log = logging.getLogger(__name__)

__all__ = ["EXIT_SHUTDOWN_DEADLINE", "STOP_SIGNALS", "Runner", "stop_on_signals"]

# While waiting out a rebalance at shutdown, how long each poll that serves it lasts.
REBALANCE_POLL_SECONDS = 0.2
# Time the final commit leaves for close() (leave the group) within the deadline.
CLOSE_RESERVE_SECONDS = 3.0
# How often the same undecodable offset is reported before it is given up as a dead
# letter: a transient corruption in transit is fetched again; corruption on the broker
# is the same every time. The client may report one fetch's error twice, so this is
# two or three fetches.
UNDECODABLE_ATTEMPTS = 3
# An internal error's message in the dead-letter header: enough to recognise the bug;
# the traceback is in the log.
INTERNAL_ERROR_MESSAGE_CHARS = 1_000


class Runner:
    def __init__(
        self,
        settings: Settings,
        pipeline: Pipeline,
        consumer: Consumer,
        producer: Producer,
        encoder: Callable[[Mapping[str, Any]], bytes],
        metrics: Metrics,
        checkpoint: Checkpoint,
        reports: DeliveryReports,
        watchdog: Watchdog,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._pipeline = pipeline
        self._consumer = consumer
        self._producer = producer
        self._encode = encoder
        self._metrics = metrics
        self._checkpoint = checkpoint
        self._reports = reports
        self._watchdog = watchdog
        self._clock = clock
        # Until run() is given the topics' limits, the producer's own.
        limit = int(settings.producer_config()["message.max.bytes"])
        self._limits = {settings.clean_topic: limit, settings.dead_letter_topic: limit}
        self._assigned: set[tuple[str, int]] = set()
        # Since the last checkpoint: the next input position per partition, the
        # records, and what the outputs count once they are durable.
        self._positions: dict[tuple[str, int], int] = {}
        self._records_since_checkpoint = 0
        self._checkpoint_due_at = 0.0
        self._clean_since: dict[str, int] = {}
        self._dead_letters_since: dict[str, int] = {}
        self._occurred_at_since: list[float] = []
        # (topic, partition) -> [next undecodable offset to give up, attempts at it]
        self._undecodable: dict[tuple[str, int], list[int]] = {}
        self._stop_requested = False
        self._stop_requested_at: float | None = None
        self._failed = False
        self._closed = False
        self.last_poll_monotonic = time.monotonic()

    # -- lifecycle ---------------------------------------------------------------

    def request_stop(self) -> None:
        """Safe from a signal handler: only sets a flag the loop checks."""
        if not self._stop_requested:
            self._stop_requested_at = time.monotonic()
        self._stop_requested = True

    @property
    def stop_requested(self) -> bool:
        return self._stop_requested

    @property
    def assigned_partitions(self) -> int:
        return len(self._assigned)

    def cluster_metadata(self, timeout: float) -> Any:
        """The raw topic's metadata through the consumer's connection, for the start-up
        check; raises KafkaException when no broker answers within `timeout`."""
        try:
            return self._consumer.list_topics(self._settings.raw_topic, timeout=timeout)
        finally:
            # Serve the clients' queued logs and error callbacks (rate-limited by then).
            self._consumer.poll(0)
            self._producer.poll(0)

    def run(self, output_limits: Mapping[str, int] | None = None) -> None:
        if output_limits:
            self._limits.update(output_limits)
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
        self._checkpoint.start()
        self._start_checkpoint_interval()
        liveness = self._settings.liveness_timeout_seconds
        batch_size = self._settings.batch_size
        poll_timeout = self._settings.poll_timeout_seconds
        try:
            while not self._stop_requested:
                self._producer.poll(0)
                self._reports.raise_first_failure()
                if self._checkpoint_due():
                    self._commit_checkpoint()
                self._watchdog.expect("consuming", liveness)
                batch = self._consumer.consume(batch_size, poll_timeout)
                self.last_poll_monotonic = time.monotonic()
                self._metrics.last_poll.set(time.time())
                self._watchdog.expect("processing a batch", liveness)
                if batch:
                    self._checkpoint.before_outputs()
                    self._process_batch(batch)
        except BaseException:
            self._failed = True
            raise
        finally:
            committed = self._shutdown()
        if not committed:
            self._metrics.final_commit_failures.inc()
            raise FinalCommitFailed(
                "the final commit did not go through before the shutdown deadline; "
                "the next owner of those partitions re-reads what was not committed"
            )

    def _shutdown(self) -> bool:
        """After a stop: a final checkpoint, then leave the group. After a failure:
        nothing more is committed (a restart reads again from the last checkpoint).
        True when the final commit went through or was not due."""
        committed = True
        try:
            if self._failed:
                self._checkpoint.abandon()
            else:
                started = self._stop_requested_at or time.monotonic()
                deadline = (
                    started + self._settings.shutdown_deadline_seconds - CLOSE_RESERVE_SECONDS
                )
                committed = final_commit(
                    self._checkpoint, self._positions, deadline, self._serve_rebalance
                )
                if committed:
                    self._checkpoint_committed()
        except KafkaFailure:
            if not self._failed:
                raise
        finally:
            self._watchdog.expect("leaving the group", self._settings.shutdown_deadline_seconds)
            self.close()
        log.info(
            "stopped",
            extra={"final_commit": committed if not self._failed else "skipped after a failure"},
        )
        return committed or self._failed

    def close(self) -> None:
        """Leave the group and release the consumer, once. Also when the loop never ran
        (a start-up check failed): a consumer left to the interpreter's exit is
        destroyed while its threads may still call back into Python."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(KafkaException, RuntimeError):
            self._consumer.close()

    def _serve_rebalance(self) -> None:
        """Let librdkafka run a pending rebalance (its callbacks run inside consume)
        without taking new work: records that still arrive are not processed and their
        positions not recorded, so the next owner reads them."""
        with contextlib.suppress(KafkaException):
            self._consumer.pause(self._consumer.assignment())
        self._watchdog.expect("serving a rebalance", REBALANCE_POLL_SECONDS + GRACE_SECONDS)
        self._consumer.consume(self._settings.batch_size, REBALANCE_POLL_SECONDS)

    # -- checkpoints ---------------------------------------------------------------

    def _start_checkpoint_interval(self) -> None:
        self._checkpoint_due_at = time.monotonic() + self._settings.checkpoint_interval_ms / 1000.0
        self._records_since_checkpoint = 0

    def _checkpoint_due(self) -> bool:
        return (
            self._records_since_checkpoint >= self._settings.checkpoint_records
            or time.monotonic() >= self._checkpoint_due_at
        )

    def _commit_checkpoint(self, final: bool = False) -> None:
        if self._checkpoint.commit(self._positions, final=final):
            self._checkpoint_committed()
        elif self._settings.exactly_once:
            self._checkpoint_discarded()  # aborted and rewound: the records come again
        # At-least-once, not committed (outputs in flight, or the commit refused by a
        # rebalance): the positions stay and the next checkpoint commits them.
        self._start_checkpoint_interval()

    def _checkpoint_committed(self) -> None:
        """The outputs since the last checkpoint are acknowledged: count them."""
        for provider, count in self._clean_since.items():
            self._metrics.clean_records.labels(provider).inc(count)
        for reason, count in self._dead_letters_since.items():
            self._metrics.dead_letters.labels(reason).inc(count)
        now = self._clock()
        observe = self._metrics.end_to_end_seconds.observe
        for occurred_at in self._occurred_at_since:
            observe(max(0.0, now - occurred_at))
        self._checkpoint_discarded()

    def _checkpoint_discarded(self) -> None:
        self._positions = {}
        self._clean_since = {}
        self._dead_letters_since = {}
        self._occurred_at_since = []

    # -- per record ----------------------------------------------------------------

    def _process_batch(self, batch: list[Message]) -> None:
        # Counters move once per batch and label set, not once per record; `finally`
        # keeps them right when a record stops the loop half-way.
        outcomes: dict[tuple[str, str, str, str], int] = {}
        processed = 0
        started = time.perf_counter()
        try:
            processed = self._process_records(batch, outcomes)
        finally:
            elapsed = time.perf_counter() - started
            self._metrics.batch_seconds.observe(elapsed)
            if processed:
                self._metrics.records_consumed.labels(self._settings.raw_topic).inc(processed)
                self._metrics.record_seconds.observe(elapsed / processed)
            for labels, count in outcomes.items():
                self._metrics.outcomes.labels(*labels).inc(count)
            self._records_since_checkpoint += processed

    def _process_records(
        self, batch: list[Message], outcomes: dict[tuple[str, str, str, str], int]
    ) -> int:
        positions = self._positions
        process = self._process
        processed = 0
        # Partitions sought past an undecodable offset in this batch: the rest of the
        # batch for them was fetched before the seek (a corrupt batch's error can come
        # twice in one consumed batch), and the client fetches again from the seek.
        sought: set[tuple[str, int]] = set()
        for message in batch:
            if sought and (message.topic(), message.partition()) in sought:
                continue
            if message.error() is not None:
                if self._on_consume_error(message, outcomes):
                    sought.add((message.topic(), message.partition()))
                continue
            raw = to_raw_record(message)
            where = (raw.topic, raw.partition)
            positions[where] = raw.offset + 1
            if self._undecodable:
                self._undecodable.pop(where, None)
            outcome = process(raw)
            if type(outcome) is Accepted:
                outcome = self._produce_clean(raw, outcome)
            if type(outcome) is Rejected:
                self._produce_dead_letter(raw, outcome)
            labels = _outcome_labels(outcome)
            outcomes[labels] = outcomes.get(labels, 0) + 1
            processed += 1
        return processed

    def _process(self, raw: RawRecord) -> Accepted | Ignored | Rejected:
        """The pipeline's outcome; an unexpected exception is a bug, not bad data, but
        must not stop the partition for good (see LOYALTY_ON_INTERNAL_ERROR)."""
        try:
            return self._pipeline.process(raw)
        except Exception as exc:
            return self._internal_error(raw, exc, "processing")

    def _internal_error(self, raw: RawRecord, exc: Exception, stage: str) -> Rejected:
        log.error(
            f"internal error while {stage} a record",
            extra={
                **_position(raw),
                "error": f"{type(exc).__name__}: {exc}"[:INTERNAL_ERROR_MESSAGE_CHARS],
                "traceback": traceback.format_exc(),
                "on_internal_error": self._settings.on_internal_error,
            },
        )
        if self._settings.on_internal_error == "stop":
            raise exc
        return Rejected(
            reason=InternalError.reason,
            message=f"internal error while {stage}: {type(exc).__name__}: {exc}"[
                :INTERNAL_ERROR_MESSAGE_CHARS
            ],
            error_class=f"{type(exc).__module__}.{type(exc).__qualname__}",
        )

    def _produce_clean(self, raw: RawRecord, accepted: Accepted) -> Accepted | Rejected:
        """Produce the clean record; the outcome it ends in (a dead letter when it
        cannot be encoded or is too large for the clean topic)."""
        try:
            value = self._encode(accepted.record)
        except Exception as exc:
            return self._internal_error(raw, exc, "encoding")
        key = accepted.key
        headers = [
            ("provider", accepted.provider.encode()),
            ("event_type", accepted.event_type.encode()),
            ("event_id", accepted.event_id.encode()),
        ]
        topic = self._settings.clean_topic
        size = record_size(key, value, headers)
        if size > self._limits[topic]:
            return Rejected(
                reason=OutputTooLarge.reason,
                message=(
                    f"the clean record is {size} bytes; {topic} takes at most {self._limits[topic]}"
                ),
                provider=accepted.provider,
                event_type=accepted.event_type,
                event_type_label=accepted.event_type,
            )
        self._produce(topic, key=key, value=value, headers=headers)
        provider = accepted.provider
        self._clean_since[provider] = self._clean_since.get(provider, 0) + 1
        self._occurred_at_since.append(accepted.record["occurred_at"].timestamp())
        return accepted

    def _produce_dead_letter(self, raw: RawRecord, rejected: Rejected) -> None:
        log.info(
            "record rejected",
            extra={
                **_position(raw),
                "reason": rejected.reason,
                "field": rejected.field,
                "provider": rejected.provider,
            },
        )
        failed_at = datetime.fromtimestamp(self._clock(), UTC)
        topic = self._settings.dead_letter_topic
        value, headers = fit_dead_letter(
            raw,
            partial(dead_letter_headers, raw, rejected, failed_at, __version__),
            self._limits[topic],
        )
        self._produce(topic, key=raw.key, value=value, headers=headers)
        reason = rejected.reason
        self._dead_letters_since[reason] = self._dead_letters_since.get(reason, 0) + 1

    def _produce(self, topic: str, **message: Any) -> None:
        try:
            produce(self._producer, topic, on_queue_full=self._waiting_for_queue, **message)
        except KafkaException as exc:
            # Refused outright: not something a retry or a dead letter fixes. Stop
            # before committing past it.
            self._metrics.produce_errors.labels(topic).inc()
            raise produce_refused(topic, exc) from exc

    def _waiting_for_queue(self) -> None:
        # A full producer queue drains as the broker acknowledges (or, past
        # message.timeout.ms, fails) what it holds: a bounded wait, not a stall.
        self._metrics.producer_queue_full.inc()
        self._watchdog.expect(
            "waiting for producer queue space", self._settings.liveness_timeout_seconds
        )

    def _on_consume_error(
        self, message: Message, outcomes: dict[tuple[str, str, str, str], int]
    ) -> bool:
        """Whether the consumer was sought past the message's partition's position."""
        error = message.error()
        self._metrics.consume_errors.labels(error.name()).inc()
        if stops_the_consumer(error):
            raise client_cannot_continue("consumer", error)
        # Only a record with coordinates can be given up as a dead letter.
        if is_undecodable(error) and message.partition() >= 0 and message.offset() >= 0:
            return self._on_undecodable(message, error, outcomes)
        log.warning("consumer error", extra={"error": error.str(), "code": error.name()})
        return False

    def _on_undecodable(
        self,
        message: Message,
        error: KafkaError,
        outcomes: dict[tuple[str, str, str, str], int],
    ) -> bool:
        """librdkafka reports an undecodable batch at the batch's first offset, again on
        every fetch, and a seek inside the batch is reported at that same offset: so an
        error below the offset already given up means the next one is undecodable too.
        That holds only for errors fetched after the seek, which is why the caller drops
        the rest of a consumed batch for a partition once this returns True (sought
        past an offset given up). Each offset given up becomes its own dead letter (no
        value: there is none to give), so every offset still ends in exactly one
        outcome."""
        topic, partition, reported = message.topic(), message.partition(), message.offset()
        where = (topic, partition)
        state = self._undecodable.get(where)
        if state is None or reported > state[0]:
            state = self._undecodable[where] = [reported, 0]
        if reported >= state[0]:
            state[1] += 1
            if state[1] < UNDECODABLE_ATTEMPTS:
                log.warning(
                    "undecodable record; fetching it again",
                    extra={
                        "topic": topic,
                        "partition": partition,
                        "offset": reported,
                        "attempt": state[1],
                        "error": error.str(),
                    },
                )
                return False
        offset = state[0]
        raw = RawRecord(value=None, topic=topic, partition=partition, offset=offset)
        rejected = Rejected(
            reason=UndecodableRecord.reason,
            message=f"the consumer could not decode the record: {error.str()}",
            error_class=f"KafkaError.{error.name()}",
        )
        self._produce_dead_letter(raw, rejected)
        self._positions[where] = offset + 1
        labels = _outcome_labels(rejected)
        outcomes[labels] = outcomes.get(labels, 0) + 1
        self._records_since_checkpoint += 1
        # Errors still reported below the next offset are the same batch: given up at
        # once. One reported at it is a new batch: fetched again first.
        state[0], state[1] = offset + 1, 0
        self._consumer.seek(TopicPartition(topic, partition, offset + 1))
        return True

    # -- rebalances ------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned.update((tp.topic, tp.partition) for tp in partitions)
        self._metrics.assigned_partitions.set(len(self._assigned))
        self._metrics.rebalances.labels("assign").inc()
        log.info("partitions assigned", extra={"partitions": _partition_names(partitions)})

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # A checkpoint before another member takes them over, so the new owner re-reads
        # nothing that was delivered. A failure here is logged, not raised: the loop
        # sees a failed delivery at its next step, and a refused commit only means the
        # new owner reads again (at least once).
        try:
            self._commit_checkpoint(final=True)
        except KafkaException as exc:
            self._metrics.commit_errors.inc()
            log.warning(
                "checkpoint on revocation failed",
                extra={"error": describe(exc), "partitions": len(partitions)},
            )
        self._forget(partitions)
        self._metrics.rebalances.labels("revoke").inc()
        log.info("partitions revoked", extra={"partitions": _partition_names(partitions)})

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Lost, not revoked: another member may already own them, so commit nothing
        # for them; exactly-once aborts the open transaction and rewinds the rest.
        self._forget(partitions)
        self._checkpoint.partitions_lost(self._assigned)
        if self._settings.exactly_once:
            self._checkpoint_discarded()
        self._metrics.rebalances.labels("lost").inc()
        log.warning("partitions lost", extra={"partitions": _partition_names(partitions)})

    def _forget(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            where = (tp.topic, tp.partition)
            self._positions.pop(where, None)
            self._undecodable.pop(where, None)
            self._assigned.discard(where)
        self._metrics.assigned_partitions.set(len(self._assigned))


def fit_dead_letter(
    raw: RawRecord, headers_for: Callable[..., HeaderList], limit: int
) -> tuple[bytes | None, HeaderList]:
    """The dead letter's value and headers (`headers_for`: dead_letter_headers with the
    record's facts bound), made to fit the dead-letter topic: a record too large must not
    stop the service, or it would stop again on every restart. The value goes first (a
    header says how large it was; the raw topic still holds it); headers can be as large
    as a value, so if it still does not fit, the original headers go too (another header
    says how large they were)."""
    headers = headers_for()
    if record_size(raw.key, raw.value, headers) <= limit:
        return raw.value, headers
    value_size = len(raw.value or b"")
    headers = headers_for(value_omitted_bytes=value_size)
    if record_size(raw.key, None, headers) <= limit:
        log.warning("dead-letter value too large; sent without it", extra=_position(raw))
        return None, headers
    log.warning(
        "dead letter too large without its value; sent without the original headers",
        extra=_position(raw),
    )
    original_size = sum(len(name.encode()) + len(value or b"") for name, value in raw.headers)
    return None, headers_for(value_omitted_bytes=value_size, headers_omitted_bytes=original_size)


def _position(raw: RawRecord) -> dict[str, Any]:
    return {"topic": raw.topic, "partition": raw.partition, "offset": raw.offset}


def _outcome_labels(outcome: Accepted | Ignored | Rejected) -> tuple[str, str, str, str]:
    """The loyalty_records_processed_total labels of an outcome."""
    if type(outcome) is Accepted:
        return ("accepted", outcome.provider, outcome.event_type, "")
    if type(outcome) is Ignored:
        return ("ignored", outcome.provider, outcome.event_type_label, "")
    return ("rejected", outcome.provider or "unknown", outcome.event_type_label, outcome.reason)


def _partition_names(partitions: list[TopicPartition]) -> str:
    return ",".join(f"{tp.topic}/{tp.partition}" for tp in partitions)


# The signals an orchestrator (SIGTERM) or a person (Ctrl-C) stops the service with.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def stop_on_signals(runner: Runner, watchdog: Watchdog) -> Iterator[None]:
    """While inside, the first SIGTERM/SIGINT asks the runner to finish the batch,
    checkpoint and leave the group; the watchdog ends the process if that takes longer
    than the shutdown deadline, counted from the signal even while the loop is blocked
    in the client. A second signal kills the process at once. Neither loses anything:
    uncommitted records are read again. On the way out the previous handlers come back
    (the model is uvicorn's capture_signals)."""
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}

    def handle(signum: int, _frame: Any) -> None:
        log.info("stop requested", extra={"signal": signum})
        # Python handlers run only between bytecodes, never while the loop waits in C;
        # the default disposition terminates the process wherever it is.
        for stop_signal in STOP_SIGNALS:
            signal.signal(stop_signal, signal.SIG_DFL)
        watchdog.stop_signalled()
        runner.request_stop()

    for signum in STOP_SIGNALS:
        signal.signal(signum, handle)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
