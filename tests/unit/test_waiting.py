"""The start-up wait's rhythm (consumer/waiting.py), shared by the wait for the brokers
and the wait for the schema registry: an ERROR line at once and then once per reminder
interval, a doubling back-off up to its cap, a stop that cuts the sleep short."""

from __future__ import annotations

import logging

import pytest

from consumer import waiting
from consumer.waiting import StartupWait


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_the_reason_is_said_at_once_then_once_per_reminder(monkeypatch, caplog):
    clock = Clock()
    monkeypatch.setattr(waiting, "time", clock)
    wait = StartupWait(
        logging.getLogger("test.waiting"), "cannot reach it", "IT_URL", lambda: False, 1, 4, 6
    )
    with caplog.at_level(logging.ERROR, "test.waiting"):
        for _ in range(5):
            wait.failed("refused")
    # Back-off 1, 2, 4, 4, 4 s; lines at 0 s and at 7 s (the first attempt 6 s later).
    assert [r.retry_in_seconds for r in caplog.records] == [1, 4]
    # (The back-off is slept in short steps, so a step's rounding shows.)
    assert [r.waited_seconds for r in caplog.records] == [0.0, pytest.approx(7, abs=0.5)]
    assert {(r.getMessage(), r.variable, r.error) for r in caplog.records} == {
        ("cannot reach it", "IT_URL", "refused")
    }
    assert wait.said_anything and wait.waited_seconds == pytest.approx(15, abs=1)


def test_a_stop_cuts_the_back_off_short(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(waiting, "time", clock)
    wait = StartupWait(
        logging.getLogger("test.waiting"),
        "cannot reach it",
        "IT_URL",
        lambda: clock.now >= 0.3,
        30,
        30,
        60,
    )
    wait.failed("refused")
    assert clock.now < 0.5
