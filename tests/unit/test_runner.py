"""The loop, driven through its client seam (design habit 6) with scripted clients:
one outcome per record whatever goes wrong with it, nothing committed past a failed
output, and the final commit waits out a rebalance within the shutdown deadline."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime
from functools import partial

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from consumer.checkpoint import AtLeastOnce
from consumer.config import Settings
from consumer.dead_letter import (
    HEADERS_OMITTED_BYTES,
    REASON,
    VALUE_OMITTED_BYTES,
    dead_letter_headers,
)
from consumer.errors import DeliveryFailed, FinalCommitFailed
from consumer.kafka_io import DeliveryReports, record_size
from consumer.metrics import Metrics
from consumer.pipeline import Pipeline
from consumer.records import RawRecord, Rejected
from consumer.runner import UNDECODABLE_ATTEMPTS, Runner, fit_dead_letter
from consumer.watchdog import Watchdog
from tests.helpers.payloads import mage_seed_bytes

RAW = "raw"


class Message:
    """What confluent-kafka's Message offers the loop."""

    def __init__(self, offset, value=b"", partition=0, error=None, topic=RAW):
        self._offset, self._value, self._partition = offset, value, partition
        self._error, self._topic = error, topic

    def error(self):
        return self._error

    def value(self):
        return self._value

    def headers(self):
        return []

    def key(self):
        return None

    def topic(self):
        return self._topic

    def partition(self):
        return self._partition

    def offset(self):
        return self._offset

    def timestamp(self):
        return (1, 1_771_416_000_000)


class ScriptedConsumer:
    """Hands out the scripted batches in turn, then asks the runner to stop. Commits
    fail with `commit_errors` in turn, then succeed."""

    def __init__(self, batches, commit_errors=()):
        self.batches = list(batches)
        self.commit_errors = list(commit_errors)
        self.commits: list[tuple[list[tuple[str, int, int]], bool]] = []
        self.seeks: list[tuple[int, int]] = []
        self.served_rebalance = 0
        self.closed = False
        self.runner: Runner | None = None

    def subscribe(self, topics, **callbacks):
        self.callbacks = callbacks

    def consume(self, num_messages, timeout):
        if self.batches:
            return self.batches.pop(0)
        if not self.runner.stop_requested:
            self.runner.request_stop()
        else:
            self.served_rebalance += 1
            time.sleep(timeout)  # as librdkafka waits for the rebalance
        return []

    def commit(self, offsets=None, asynchronous=True):
        if self.commit_errors:
            raise KafkaException(KafkaError(self.commit_errors.pop(0)))
        self.commits.append(([(tp.topic, tp.partition, tp.offset) for tp in offsets], asynchronous))

    def seek(self, tp: TopicPartition):
        self.seeks.append((tp.partition, tp.offset))

    def assignment(self):
        return []

    def pause(self, partitions):
        pass

    def close(self):
        self.closed = True


class RecordingProducer:
    def __init__(self, reports: DeliveryReports, fail_deliveries: bool = False):
        self.produced: list[dict] = []
        self.reports = reports
        self.fail_deliveries = fail_deliveries

    def produce(self, topic, key=None, value=None, headers=None):
        self.produced.append({"topic": topic, "key": key, "value": value, "headers": headers})

    def poll(self, timeout=0):
        return 0

    def flush(self, timeout=None):
        if self.fail_deliveries:
            failed = self.produced[-1]
            self.reports.on_delivery(KafkaError(KafkaError._MSG_TIMED_OUT), _Sent(failed["topic"]))
        return 0

    def dead_letters(self):
        return [p for p in self.produced if p["topic"] == "dlq"]


class _Sent:
    def __init__(self, topic):
        self._topic = topic

    def topic(self):
        return self._topic

    def partition(self):
        return 0


class ExplodingPipeline:
    """A bug: raises on the record whose value is b'boom'."""

    def __init__(self):
        self.seen: list[int] = []
        self.real = Pipeline()

    def process(self, raw: RawRecord):
        self.seen.append(raw.offset)
        if raw.value == b"boom":
            raise RecursionError("maximum recursion depth exceeded")
        return self.real.process(raw)


def run_loop(
    batches,
    pipeline=None,
    commit_errors=(),
    deadline=5.0,
    limits=None,
    fail_deliveries=False,
    consumers=None,
    **overrides,
):
    settings = dataclasses.replace(
        Settings(bootstrap_servers="127.0.0.1:9"),
        raw_topic=RAW,
        clean_topic="clean",
        dead_letter_topic="dlq",
        shutdown_deadline_seconds=deadline,
        poll_timeout_seconds=0.01,
        **overrides,
    )
    metrics = Metrics()
    reports = DeliveryReports(metrics)
    consumer = ScriptedConsumer(batches, commit_errors)
    if consumers is not None:
        consumers.append(consumer)
    producer = RecordingProducer(reports, fail_deliveries)
    watchdog = Watchdog(deadline)  # never started: only records what is expected
    runner = Runner(
        settings,
        pipeline or Pipeline(),
        consumer,
        producer,
        lambda record: b"avro",
        metrics,
        AtLeastOnce(consumer, producer, reports, metrics, watchdog),
        reports,
        watchdog,
    )
    consumer.runner = runner
    try:
        runner.run(limits)
    finally:
        assert consumer.closed
    return consumer, producer, metrics


def header(produced: dict, name: str) -> bytes | None:
    values = [value for key, value in produced["headers"] if key == name]
    return values[-1] if values else None


# -- poison records ---------------------------------------------------------------------


def test_a_bug_on_one_record_dead_letters_it_and_the_loop_goes_on():
    pipeline = ExplodingPipeline()
    consumer, producer, metrics = run_loop(
        [[Message(0, b"boom"), Message(1, b"not json")]], pipeline
    )
    assert pipeline.seen == [0, 1]
    reasons = [header(p, REASON) for p in producer.dead_letters()]
    assert reasons == [b"internal_error", b"invalid_json"]
    assert b"RecursionError" in header(
        producer.dead_letters()[0], "__connect.errors.exception.message"
    )
    assert consumer.commits[-1] == ([(RAW, 0, 2)], False)
    assert (
        metrics.registry.get_sample_value(
            "loyalty_records_processed_total",
            {
                "outcome": "rejected",
                "provider": "unknown",
                "event_type": "none",
                "reason": "internal_error",
            },
        )
        == 1
    )


def test_on_internal_error_stop_stops_without_committing_the_record():
    with pytest.raises(RecursionError):
        run_loop([[Message(0, b"boom")]], ExplodingPipeline(), on_internal_error="stop")


def test_a_clean_record_too_large_for_its_topic_becomes_output_too_large():
    signed = Pipeline()
    _, producer, _ = run_loop(
        [[Message(0, mage_seed_bytes())]], signed, limits={"clean": 200, "dlq": 1_000_000}
    )
    assert [p["topic"] for p in producer.produced] == ["dlq"]
    assert header(producer.produced[0], REASON) == b"output_too_large"


def test_an_undecodable_batch_is_retried_then_each_offset_dead_lettered_and_skipped():
    bad = KafkaError(KafkaError._BAD_COMPRESSION, "Invalid compressed data")
    # librdkafka reports the batch at its base offset (5), also after a seek inside it.
    errors = [[Message(5, None, error=bad)] for _ in range(UNDECODABLE_ATTEMPTS)]
    consumer, producer, _ = run_loop(
        [*errors, [Message(5, None, error=bad)], [Message(7, b"not json")]]
    )
    assert consumer.seeks == [(0, 6), (0, 7)]
    dead = producer.dead_letters()
    assert [header(p, REASON) for p in dead] == [
        b"undecodable_record",
        b"undecodable_record",
        b"invalid_json",
    ]
    assert [header(p, "__connect.errors.offset") for p in dead] == [b"5", b"6", b"7"]
    assert dead[0]["value"] is None
    assert consumer.commits[-1] == ([(RAW, 0, 8)], False)


def test_an_undecodable_error_fetched_before_the_seek_past_it_gives_nothing_else_up():
    bad = KafkaError(KafkaError._BAD_COMPRESSION, "Invalid compressed data")
    # A corrupt batch of one record at 5, then a good record at 6. librdkafka hands the
    # batch's error over twice in one consumed batch; the second was fetched before the
    # seek past 5, so it says nothing about 6.
    errors = [[Message(5, None, error=bad)] for _ in range(UNDECODABLE_ATTEMPTS - 1)]
    twice = [Message(5, None, error=bad), Message(5, None, error=bad)]
    consumer, producer, _ = run_loop([*errors, twice, [Message(6, b"not json")]])
    assert consumer.seeks == [(0, 6)]
    dead = producer.dead_letters()
    assert [(header(p, "__connect.errors.offset"), header(p, REASON)) for p in dead] == [
        (b"5", b"undecodable_record"),
        (b"6", b"invalid_json"),
    ]
    assert consumer.commits[-1] == ([(RAW, 0, 7)], False)


# -- checkpoints ------------------------------------------------------------------------


def test_a_failed_delivery_is_never_committed_past():
    consumers: list[ScriptedConsumer] = []
    with pytest.raises(DeliveryFailed):
        run_loop([[Message(0, b"not json")]], fail_deliveries=True, consumers=consumers)
    assert consumers[0].commits == []


def test_each_poll_is_stamped_for_the_stalled_loop_alert():
    before = time.time()
    _, _, metrics = run_loop([[Message(0, b"x")]])
    stamped = metrics.registry.get_sample_value("loyalty_last_poll_timestamp_seconds")
    assert stamped >= before


def test_each_checkpoint_commits_the_next_position_of_each_partition():
    consumer, _, _ = run_loop(
        [[Message(0, b"x", partition=0), Message(3, b"y", partition=1), Message(1, b"z")]]
    )
    assert consumer.commits == [([(RAW, 0, 2), (RAW, 1, 4)], False)]


def test_positions_a_checkpoint_could_not_commit_are_committed_by_the_next():
    # A checkpoint after every record; the first commit is refused by a rebalance. No
    # more records come for the partition, so only a kept position gets it committed.
    consumer, _, metrics = run_loop(
        [[Message(0, b"x")]],
        commit_errors=[KafkaError.ILLEGAL_GENERATION],
        checkpoint_records=1,
    )
    assert consumer.commits == [([(RAW, 0, 1)], False)]
    assert metrics.registry.get_sample_value("loyalty_commit_errors_total") == 1


def test_a_commit_refused_during_a_rebalance_is_retried_once_it_is_served():
    consumer, _, metrics = run_loop(
        [[Message(0, b"x")]],
        commit_errors=[KafkaError.REBALANCE_IN_PROGRESS, KafkaError.ILLEGAL_GENERATION],
    )
    assert len(consumer.commits) == 1
    assert consumer.served_rebalance == 2
    assert metrics.registry.get_sample_value("loyalty_final_commit_failures_total") == 0


def test_nothing_to_commit_is_not_a_failure():
    consumer, _, metrics = run_loop([])
    assert consumer.commits == []
    assert metrics.registry.get_sample_value("loyalty_final_commit_failures_total") == 0


def test_a_final_commit_that_never_goes_through_fails_the_run():
    # Deadline 3.5 s, of which 3 s are kept for close(): a few retries, then give up.
    with pytest.raises(FinalCommitFailed) as failure:
        run_loop(
            [[Message(0, b"x")]],
            commit_errors=[KafkaError.REBALANCE_IN_PROGRESS] * 100,
            deadline=3.5,
        )
    assert failure.value.exit_status == 4


def test_a_commit_error_that_is_not_a_rebalance_is_not_retried():
    with pytest.raises(FinalCommitFailed):
        run_loop([[Message(0, b"x")]], commit_errors=[KafkaError.GROUP_AUTHORIZATION_FAILED])


# -- dead letters that do not fit --------------------------------------------------------


def test_a_dead_letter_too_large_goes_without_its_value_then_without_original_headers():
    raw = RawRecord(value=b"v" * 1000, headers=[("h", b"x" * 1000)], offset=3)
    rejected = Rejected(reason="invalid_json", message="not JSON")
    failed_at = datetime(2026, 2, 18, tzinfo=UTC)
    headers_for = partial(dead_letter_headers, raw, rejected, failed_at, "1.0")
    assert fit_dead_letter(raw, headers_for, 10_000) == (raw.value, headers_for())
    without_value = record_size(None, None, headers_for(value_omitted_bytes=1000))
    value, fitted = fit_dead_letter(raw, headers_for, without_value)
    assert value is None and ("h", b"x" * 1000) in fitted
    assert fitted[-2] == (VALUE_OMITTED_BYTES, b"1000")
    value, fitted = fit_dead_letter(raw, headers_for, without_value - 1)
    assert value is None and ("h", b"x" * 1000) not in fitted
    assert fitted[-1] == (HEADERS_OMITTED_BYTES, b"1001")
    assert record_size(None, None, fitted) < without_value - 1
