"""A thread that ends the process when the loop stops coming back.

Some librdkafka calls block past their own timeouts (librdkafka #5456:
send_offsets_to_transaction never checks its coordinator request timeout; #5511: it
waits forever for a group coordinator whose broker went away across a restart), and a
thread blocked in C cannot be interrupted: not by an exception, and not by a signal
handler either, since Python runs handlers between bytecodes of the main thread. So
the bound is enforced from outside the call, as Kafka's own `max.block.ms` is meant to
be (design habit 11):

- before every call that may block, the loop says what it is about to do and by when it
  will be back (`expect`); after each poll it promises to poll again within the
  liveness timeout. If a deadline passes, the watchdog logs what was expected and the
  main thread's stack, and exits with EXIT_STALLED. Any supervisor (Kubernetes,
  compose, systemd) restarts the member; uncommitted records are read again, and with
  exactly-once the new producer fences the old transaction. Nothing is lost.
- a stop signal reaches this thread through `signal.set_wakeup_fd`, which the C-level
  handler writes to at once, even while the main thread is blocked. The shutdown
  deadline therefore starts when the signal arrives, not when the main thread next
  runs Python; past it the process exits with EXIT_SHUTDOWN_DEADLINE. A second stop
  signal ends the process at once with 128 + the signal's number, the status a shell
  gives a process killed by it: the Python handler, which makes a second signal kill
  the process by default, may not have run yet.

`kill -USR1 <pid>` prints every thread's stack to stderr at any time (faulthandler),
for a look at a loop that is slow but not yet stalled.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import select
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable

log = logging.getLogger(__name__)

# Exit statuses of the process when the watchdog ends it (documented with the others).
EXIT_SHUTDOWN_DEADLINE = 3
EXIT_STALLED = 6
# How often the watchdog looks at the clock: a stall is seen at most this late.
CHECK_INTERVAL_SECONDS = 0.5
# Room on top of a call's own timeout before the call counts as stalled: librdkafka
# returns a honoured timeout a little after it, and the log line needs a moment.
GRACE_SECONDS = 5.0
# The signal that prints every thread's stack on demand.
STACK_DUMP_SIGNAL = signal.SIGUSR1


class Watchdog:
    """Watches one deadline (what the main thread expects to be back from, and by when)
    and the shutdown deadline after a stop signal."""

    def __init__(
        self,
        shutdown_deadline_seconds: float,
        stop_signals: Iterable[int] = (signal.SIGTERM, signal.SIGINT),
        exit_process: Callable[[int], None] = os._exit,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._shutdown_deadline_seconds = shutdown_deadline_seconds
        self._stop_signals = frozenset(int(s) for s in stop_signals)
        self._exit = exit_process
        self._clock = clock
        self._doing = "starting"
        self._deadline: float | None = None
        self._stop_signalled_at: float | None = None
        self._stop_signals_received = 0
        self._main_thread_id = threading.main_thread().ident
        self._thread: threading.Thread | None = None
        self._finished = threading.Event()
        self._wakeup_read = -1
        self._wakeup_write = -1
        self._previous_wakeup_fd = -1

    def expect(self, doing: str, within_seconds: float) -> None:
        """The main thread is about to do `doing` and will be back within the time
        given. Two attribute writes: cheap enough for once per batch."""
        self._doing = doing
        self._deadline = self._clock() + within_seconds

    def idle(self) -> None:
        """Nothing is expected (waiting on purpose, e.g. for the brokers at start-up)."""
        self._deadline = None

    def stop_signalled(self) -> None:
        """Start the shutdown deadline now (the signal handler calls it as well, for
        when no wake-up descriptor could be installed)."""
        if self._stop_signalled_at is None:
            self._stop_signalled_at = self._clock()

    def start(self) -> None:
        faulthandler.register(STACK_DUMP_SIGNAL, all_threads=True, chain=False)
        if threading.current_thread() is threading.main_thread():
            self._wakeup_read, self._wakeup_write = os.pipe()
            os.set_blocking(self._wakeup_read, False)
            os.set_blocking(self._wakeup_write, False)
            self._previous_wakeup_fd = signal.set_wakeup_fd(
                self._wakeup_write, warn_on_full_buffer=False
            )
        self._thread = threading.Thread(target=self._watch, name="watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._finished.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * CHECK_INTERVAL_SECONDS)
        if self._wakeup_write >= 0:
            signal.set_wakeup_fd(self._previous_wakeup_fd)
            os.close(self._wakeup_write)
            os.close(self._wakeup_read)
            self._wakeup_read = self._wakeup_write = -1
        faulthandler.unregister(STACK_DUMP_SIGNAL)

    def __enter__(self) -> Watchdog:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- the watching thread ---------------------------------------------------------

    def _watch(self) -> None:
        while not self._finished.is_set():
            self._wait_for_signal_or_tick()
            if self._finished.is_set():
                return
            self.check()

    def _wait_for_signal_or_tick(self) -> None:
        if self._wakeup_read < 0:
            self._finished.wait(CHECK_INTERVAL_SECONDS)
            return
        readable, _, _ = select.select([self._wakeup_read], [], [], CHECK_INTERVAL_SECONDS)
        if not readable:
            return
        try:
            received = os.read(self._wakeup_read, 64)
        except BlockingIOError:
            return
        for signum in received:
            if signum in self._stop_signals:
                self._stop_signal_received(signum)

    def _stop_signal_received(self, signum: int) -> None:
        self.stop_signalled()
        self._stop_signals_received += 1
        if self._stop_signals_received >= 2:
            log.warning("second stop signal; exiting at once", extra={"signal": signum})
            self._end(128 + signum)

    def check(self) -> None:
        """One look at the clock; ends the process when a deadline has passed."""
        now = self._clock()
        if (
            self._stop_signalled_at is not None
            and now - self._stop_signalled_at > self._shutdown_deadline_seconds
        ):
            log.error(
                "shutdown took too long; exiting",
                extra={
                    "deadline_seconds": self._shutdown_deadline_seconds,
                    "doing": self._doing,
                    "stack": self._main_stack(),
                },
            )
            self._end(EXIT_SHUTDOWN_DEADLINE)
            return
        deadline = self._deadline
        if deadline is not None and now > deadline:
            log.error(
                f"the loop is stuck ({self._doing}); exiting so that a supervisor restarts "
                "it: uncommitted records are read again",
                extra={
                    "doing": self._doing,
                    "overdue_seconds": round(now - deadline, 1),
                    "stack": self._main_stack(),
                    "exit_status": EXIT_STALLED,
                },
            )
            self._end(EXIT_STALLED)

    def _main_stack(self) -> str:
        frame = sys._current_frames().get(self._main_thread_id)
        return "".join(traceback.format_stack(frame)) if frame is not None else "(not found)"

    def _end(self, status: int) -> None:
        self._finished.set()
        logging.shutdown()
        self._exit(status)
