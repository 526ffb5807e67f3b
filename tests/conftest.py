"""Hooks of the whole suite: no process a test started may outlive the session.

Fixtures and helpers stop what they start (tests/helpers/processes.py); this is the
proof. At the end of the session, after every fixture is torn down, any descendant of
the test run still alive fails the run, is named, and is killed. SIGTERM (a CI job
cancelled, `timeout`) is turned into the KeyboardInterrupt a Ctrl-C would raise, so
teardown runs instead of the interpreter vanishing with its children.
"""

from __future__ import annotations

import signal

import pytest

from tests.helpers import processes


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    processes.become_subreaper()
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt)


@pytest.hookimpl(wrapper=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int):
    # Inside the wrapper, pytest's own hook has torn the session's fixtures down.
    result = yield
    registered = processes.kill_registered()
    left = processes.leftovers()
    if not (registered or left):
        return result
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = [f"started and never stopped: {p.args}" for p in registered]
    lines += [f"still running: {info}" for info in left]
    if reporter is not None:
        reporter.write_sep("=", "processes left running by the tests (now killed)", red=True)
        for line in lines:
            reporter.write_line(line)
    processes.kill_all(left)
    if session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    return result
