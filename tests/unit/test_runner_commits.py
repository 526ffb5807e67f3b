"""The runner's commits, driven through its client seam (design habit 6): at shutdown
a commit refused by a rebalance under way is retried once the rebalance is served, and
one that never goes through makes the run fail with FinalCommitFailed (exit 4) and a
metric, instead of a quiet exit 0."""

from __future__ import annotations

import dataclasses
import time

import pytest
from confluent_kafka import KafkaError, KafkaException

from consumer.config import Settings
from consumer.errors import FinalCommitFailed
from consumer.metrics import Metrics
from consumer.pipeline import Pipeline
from consumer.runner import Runner


class StoppingConsumer:
    """Returns no records; the first consume() asks the runner to stop. Commits fail
    with `commit_errors` in turn, then succeed."""

    def __init__(self, commit_errors: list[int]) -> None:
        self.commit_errors = list(commit_errors)
        self.commits = 0
        self.served_rebalance = 0
        self.closed = False
        self.runner: Runner | None = None

    def list_topics(self, timeout=None):
        return None

    def subscribe(self, topics, **callbacks) -> None:
        self.callbacks = callbacks

    def consume(self, num_messages, timeout):
        if self.runner is not None and not self.runner._stop_requested:
            self.runner.request_stop()
        else:
            self.served_rebalance += 1
            time.sleep(timeout)  # as librdkafka waits for the rebalance
        return []

    def commit(self, asynchronous=True):
        self.commits += 1
        if self.commit_errors:
            raise KafkaException(KafkaError(self.commit_errors.pop(0)))
        return []

    def store_offsets(self, offsets) -> None:
        pass

    def assignment(self):
        return []

    def pause(self, partitions) -> None:
        pass

    def close(self) -> None:
        self.closed = True


class IdleProducer:
    def poll(self, timeout=0) -> int:
        return 0

    def flush(self, timeout=None) -> int:
        return 0


def run_with(commit_errors: list[int], deadline: float = 5.0) -> tuple[StoppingConsumer, Metrics]:
    settings = dataclasses.replace(
        Settings(bootstrap_servers="127.0.0.1:9"),
        shutdown_deadline_seconds=deadline,
        poll_timeout_seconds=0.01,
    )
    consumer, metrics = StoppingConsumer(commit_errors), Metrics()
    runner = Runner(settings, Pipeline(), consumer, IdleProducer(), lambda r: b"", metrics)
    consumer.runner = runner
    try:
        runner.run()
    finally:
        assert consumer.closed
    return consumer, metrics


def test_a_commit_refused_during_a_rebalance_is_retried_once_it_is_served():
    consumer, metrics = run_with([KafkaError.REBALANCE_IN_PROGRESS, KafkaError.ILLEGAL_GENERATION])
    assert consumer.commits == 3
    assert consumer.served_rebalance == 2
    assert metrics.registry.get_sample_value("loyalty_final_commit_failures_total") == 0


def test_nothing_to_commit_is_not_a_failure():
    consumer, metrics = run_with([KafkaError._NO_OFFSET])
    assert consumer.commits == 1
    assert metrics.registry.get_sample_value("loyalty_final_commit_failures_total") == 0


def test_a_final_commit_that_never_goes_through_fails_the_run():
    # Deadline 3.5 s, of which 3 s are kept for close(): a few retries, then give up.
    with pytest.raises(FinalCommitFailed) as failure:
        run_with([KafkaError.REBALANCE_IN_PROGRESS] * 100, deadline=3.5)
    assert failure.value.exit_status == 4


def test_a_commit_error_that_is_not_a_rebalance_is_not_retried():
    with pytest.raises(FinalCommitFailed):
        run_with([KafkaError.GROUP_AUTHORIZATION_FAILED])
