"""The watchdog: a deadline the loop does not meet ends the process with its stack in
the log; a stop signal starts the shutdown deadline even while the main thread is
blocked; a stopped watchdog ends nothing."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

import pytest

from consumer.watchdog import EXIT_SHUTDOWN_DEADLINE, EXIT_STALLED, Watchdog


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Exits(list):
    def __call__(self, status: int) -> None:
        self.append(status)


def test_a_missed_deadline_logs_what_was_expected_and_the_stack_then_exits(caplog):
    clock, exits = Clock(), Exits()
    watchdog = Watchdog(25, exit_process=exits, clock=clock)
    watchdog.expect("send_offsets_to_transaction", 35)
    clock.now += 30
    watchdog.check()
    assert exits == []
    clock.now += 6
    with caplog.at_level(logging.ERROR):
        watchdog.check()
    assert exits == [EXIT_STALLED]
    record = next(r for r in caplog.records if "stuck" in r.getMessage())
    assert record.doing == "send_offsets_to_transaction"
    assert "test_a_missed_deadline" in record.stack  # the main thread's own frames


def test_idle_expects_nothing():
    clock, exits = Clock(), Exits()
    watchdog = Watchdog(25, exit_process=exits, clock=clock)
    watchdog.expect("consuming", 1)
    watchdog.idle()
    clock.now += 1000
    watchdog.check()
    assert exits == []


def test_the_shutdown_deadline_counts_from_the_signal():
    clock, exits = Clock(), Exits()
    watchdog = Watchdog(25, exit_process=exits, clock=clock)
    watchdog.stop_signalled()
    clock.now += 20
    watchdog.stop_signalled()  # a second call does not restart the count
    clock.now += 6
    watchdog.check()
    assert exits == [EXIT_SHUTDOWN_DEADLINE]


def test_a_signal_reaches_the_watchdog_while_the_main_thread_is_blocked(monkeypatch):
    """The C-level handler writes to the wake-up descriptor at once; the watchdog thread
    reads it although the main thread has not run the Python handler yet."""
    exits = Exits()
    watchdog = Watchdog(0.5, exit_process=exits)
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        with watchdog:
            # The signal is delivered to the process; the wake-up byte is written by
            # the C handler. Block the main thread in C (time.sleep holds no bytecode
            # boundary until it returns) well past the deadline.
            threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGTERM)).start()
            deadline = time.monotonic() + 10
            while not exits and time.monotonic() < deadline:
                time.sleep(0.2)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert exits and exits[0] == EXIT_SHUTDOWN_DEADLINE


def test_a_second_stop_signal_ends_the_process_at_once_while_the_main_thread_is_blocked():
    """The Python handler that would let a second signal kill the process has not run
    (here: a handler that does nothing); the watchdog ends the process itself, long
    before the shutdown deadline."""
    exits = Exits()
    watchdog = Watchdog(60, exit_process=exits)
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        with watchdog:
            for delay in (0.1, 0.3):
                threading.Timer(delay, os.kill, (os.getpid(), signal.SIGTERM)).start()
            deadline = time.monotonic() + 10
            while not exits and time.monotonic() < deadline:
                time.sleep(0.2)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert exits == [128 + signal.SIGTERM]


def test_a_stopped_watchdog_ends_nothing():
    exits = Exits()
    with Watchdog(25, exit_process=exits) as watchdog:
        watchdog.expect("consuming", 0.01)
    time.sleep(0.7)
    assert exits == []


@pytest.mark.parametrize("doing", ["consuming"])
def test_expect_moves_the_deadline(doing):
    clock, exits = Clock(), Exits()
    watchdog = Watchdog(25, exit_process=exits, clock=clock)
    for _ in range(5):
        watchdog.expect(doing, 10)
        clock.now += 9
        watchdog.check()
    assert exits == []
