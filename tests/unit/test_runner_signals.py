"""stop_on_signals: a stop signal only asks the runner to stop, and the previous
handlers come back on the way out (as uvicorn's capture_signals does)."""

from __future__ import annotations

import os
import signal

import pytest

from consumer.runner import STOP_SIGNALS, stop_on_signals
from consumer.watchdog import Watchdog


class FakeRunner:
    """Only what stop_on_signals touches: the runner's stop flag."""

    def __init__(self) -> None:
        self.stop_requested = 0

    def request_stop(self) -> None:
        self.stop_requested += 1


def previous_handler(signum, frame):  # pragma: no cover - must never run
    raise AssertionError("the previous handler ran while the context was active")


@pytest.fixture
def restore_handlers():
    saved = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def test_a_signal_inside_asks_the_runner_to_stop_and_arms_the_second_signal(restore_handlers):
    runner = FakeRunner()
    signal.signal(signal.SIGTERM, previous_handler)
    with stop_on_signals(runner, Watchdog(60)):
        os.kill(os.getpid(), signal.SIGTERM)
        assert runner.stop_requested == 1
        # The second signal now takes the default disposition: it would kill at once.
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        assert signal.getsignal(signal.SIGINT) is signal.SIG_DFL


def test_previous_handlers_come_back_on_exit(restore_handlers):
    signal.signal(signal.SIGTERM, previous_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with stop_on_signals(FakeRunner(), Watchdog(60)):
        assert signal.getsignal(signal.SIGTERM) is not previous_handler
    assert signal.getsignal(signal.SIGTERM) is previous_handler
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_previous_handlers_come_back_when_the_body_raises(restore_handlers):
    signal.signal(signal.SIGTERM, previous_handler)
    with pytest.raises(RuntimeError), stop_on_signals(FakeRunner(), Watchdog(60)):
        raise RuntimeError("the loop failed")
    assert signal.getsignal(signal.SIGTERM) is previous_handler
