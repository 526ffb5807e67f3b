"""Stopping the real service process: bounded even when the broker stops answering,
and a second signal ends it at once. Uses a broker of its own, which it freezes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator

import pytest

from consumer.dev.local_broker import LocalBroker
from consumer.dev.topics import ensure_topics
from consumer.runner import EXIT_SHUTDOWN_DEADLINE
from tests.helpers import processes
from tests.integration.service_harness import produce_all, start_service_process, wait_until
from tests.integration.test_service import rivo_redemptions

DEADLINE_SECONDS = 3
# How long the test waits for the process to end: far above the deadline, so a slow
# machine does not fail it; a hang still does.
EXIT_WAIT_SECONDS = 60


@pytest.fixture(scope="module")
def own_broker() -> Iterator[LocalBroker]:
    broker = LocalBroker()
    broker.start()
    try:
        yield broker
    finally:
        os.kill(broker.pid, signal.SIGCONT)  # in case a test left it frozen
        broker.stop()


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _consumed(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("loyalty_records_consumed_total{"):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def _running_service(broker: LocalBroker, name: str) -> tuple[subprocess.Popen, int]:
    from consumer.config import Settings as _Settings
    from tests.integration.service_harness import Settings  # noqa: F401 - documents origin

    settings = _Settings(bootstrap_servers=broker.bootstrap_servers)
    ensure_topics(settings, (f"{name}-raw", f"{name}-clean", f"{name}-dlq"))
    produce_all(broker.bootstrap_servers, f"{name}-raw", rivo_redemptions(100))
    process, port = start_service_process(
        broker.bootstrap_servers,
        name,
        LOYALTY_STATISTICS_INTERVAL_MS="500",
        LOYALTY_SHUTDOWN_DEADLINE_SECONDS=str(DEADLINE_SECONDS),
        # No background commit before the stop: the final commit in close() has work.
        KAFKA_CONSUMER_AUTO_COMMIT_INTERVAL_MS="600000",
    )
    try:
        wait_until(lambda: _ready(port) and _consumed(port) == 100, "the service to consume")
    except BaseException:
        processes.kill(process)
        raise
    return process, port


def test_shutdown_ends_by_the_deadline_when_the_broker_stops_answering(own_broker):
    process, _ = _running_service(own_broker, "frozen")
    os.kill(own_broker.pid, signal.SIGSTOP)
    try:
        stopped_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        status = process.wait(EXIT_WAIT_SECONDS)
        took = time.monotonic() - stopped_at
    finally:
        os.kill(own_broker.pid, signal.SIGCONT)
        processes.kill(process)
    assert status == EXIT_SHUTDOWN_DEADLINE
    assert took >= DEADLINE_SECONDS  # it did wait for the commit, up to the deadline


def test_a_second_signal_ends_the_process_at_once(own_broker):
    process, _ = _running_service(own_broker, "impatient")
    os.kill(own_broker.pid, signal.SIGSTOP)
    try:
        process.send_signal(signal.SIGTERM)
        time.sleep(0.5)  # the first signal is being handled: the process waits on the broker
        assert process.poll() is None
        process.send_signal(signal.SIGTERM)
        status = process.wait(EXIT_WAIT_SECONDS)
    finally:
        os.kill(own_broker.pid, signal.SIGCONT)
        processes.kill(process)
    # Killed by the second signal (the first one's handler restored the default action),
    # or, when the main thread had not run that handler yet (blocked in the client), ended
    # by the watchdog with the status a shell gives a process killed by SIGTERM.
    assert status in (-signal.SIGTERM, 128 + signal.SIGTERM)
