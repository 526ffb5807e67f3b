"""A loop that stops coming back ends the process by itself (exit 6), with what it was
doing and where in the log, so any supervisor restarts it; and what it had not
committed is read again by the next member. The loop is frozen for real: the service
process runs with a pipeline that blocks on one record."""

from __future__ import annotations

import os
import sys
import time

from confluent_kafka import Consumer, TopicPartition

from consumer.dev.local_broker import free_ports
from consumer.watchdog import EXIT_STALLED
from tests.helpers import processes
from tests.integration.service_harness import produce_all

LIVENESS_SECONDS = 3
# Far above the liveness timeout, so a slow machine does not fail the test; a watchdog
# that does not fire still does.
EXIT_WAIT_SECONDS = 120

# The service's own entry point, with Pipeline.process blocking forever on b"freeze".
FROZEN_SERVICE = """
import sys, threading
from consumer import pipeline
process = pipeline.Pipeline.process
def freezing(self, raw):
    if raw.value == b"freeze":
        threading.Event().wait()
    return process(self, raw)
pipeline.Pipeline.process = freezing
from consumer.__main__ import main
sys.exit(main(["run"]))
"""


def test_a_frozen_loop_exits_by_itself_and_nothing_is_committed_past_it(
    kafka_bootstrap_servers, new_topic, group_id, tmp_path
):
    raw, clean, dlq = new_topic("raw", 1), new_topic("clean", 1), new_topic("dlq", 1)
    produce_all(kafka_bootstrap_servers, raw, [(b"not json", []), (b"freeze", [])])
    (port,) = free_ports(1)
    log_file = tmp_path / "service.log"
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap_servers,
        "LOYALTY_RAW_TOPIC": raw,
        "LOYALTY_CLEAN_TOPIC": clean,
        "LOYALTY_DLQ_TOPIC": dlq,
        "LOYALTY_GROUP_ID": group_id,
        "LOYALTY_METRICS_PORT": str(port),
        "LOYALTY_LIVENESS_TIMEOUT_SECONDS": str(LIVENESS_SECONDS),
        "LOYALTY_UNSIGNED_PROVIDERS": "mage_loyalty,rivo",
    }
    with open(log_file, "wb") as log:
        process = processes.start(
            [sys.executable, "-c", FROZEN_SERVICE], env=env, stdout=log, stderr=log
        )
        try:
            started = time.monotonic()
            status = process.wait(EXIT_WAIT_SECONDS)
            took = time.monotonic() - started
        finally:
            processes.kill(process)
    text = log_file.read_text()
    assert status == EXIT_STALLED, text
    assert took >= LIVENESS_SECONDS
    assert "the loop is stuck (processing a batch)" in text
    assert "freezing" in text  # the main thread's stack names the frozen frame
    # Nothing of the frozen batch was committed: the next member reads it again.
    reader = Consumer({"bootstrap.servers": kafka_bootstrap_servers, "group.id": group_id})
    try:
        (committed,) = reader.committed([TopicPartition(raw, 0)], timeout=10)
    finally:
        reader.close()
    assert committed.offset < 2
