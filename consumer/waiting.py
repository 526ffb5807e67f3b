"""Waiting at start-up for what the service cannot run without (the brokers, the schema
registry). A deployment often starts them together with the service, so an absence is
waited out rather than turned into a crash loop: attempts are retried with a doubling
back-off, a stop request cuts the wait short, and the reason is logged at once and then
at most once per reminder interval, so a long outage stays visible without flooding the
log."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

# How soon a stop request ends a back-off sleep.
STOP_CHECK_SECONDS = 0.1


@dataclass
class StartupWait:
    """The rhythm of one wait. The caller loops while no stop is requested, makes an
    attempt, and calls `failed(problem)` when it did not succeed. `message` and
    `variable` are what the ERROR line says and the setting it points at; `delay` is
    the next back-off, doubled after each up to `max_delay`."""

    log: logging.Logger
    message: str
    variable: str
    stop_requested: Callable[[], bool]
    delay: float
    max_delay: float
    reminder: float
    _started: float = field(init=False)
    _last_said: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self._started = time.monotonic()

    @property
    def waited_seconds(self) -> float:
        return round(time.monotonic() - self._started, 1)

    @property
    def said_anything(self) -> bool:
        return self._last_said is not None

    def failed(self, problem: str) -> None:
        """An attempt failed: say why when a reminder is due, then sleep out the
        back-off (less when a stop is requested meanwhile)."""
        now = time.monotonic()
        if self._last_said is None or now - self._last_said >= self.reminder:
            self.log.error(
                self.message,
                extra={
                    "variable": self.variable,
                    "error": problem,
                    "retry_in_seconds": self.delay,
                    "waited_seconds": round(now - self._started, 1),
                },
            )
            self._last_said = now
        deadline = time.monotonic() + self.delay
        while not self.stop_requested() and time.monotonic() < deadline:
            time.sleep(STOP_CHECK_SECONDS)
        self.delay = min(self.delay * 2, self.max_delay)
