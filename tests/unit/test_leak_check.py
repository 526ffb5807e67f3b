"""The suite's own guard (tests/conftest.py, tests/helpers/processes.py): a pytest session
whose tests leave a process running fails, names it and kills it; one whose tests stop
what they start passes. Each case runs a tiny pytest session in a subprocess, with the
suite's hooks, and looks at what it left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.helpers import processes

REPO_ROOT = Path(__file__).resolve().parents[2]
SESSION_TIMEOUT_SECONDS = 120

CONFTEST = "from tests.conftest import pytest_configure, pytest_sessionfinish  # noqa: F401\n"
PRELUDE = """\
import os, subprocess, time
from pathlib import Path
from tests.helpers import processes

HERE = Path(__file__).parent

def write_pid(name, pid):
    (HERE / f"{name}.pid").write_text(str(pid))

def wait_for_pid(name):
    path = HERE / f"{name}.pid"
    while not path.exists() or not path.read_text().strip():
        time.sleep(0.05)
"""


def run_session(tmp_path: Path, tests: str) -> subprocess.CompletedProcess[str]:
    """Runs `tests` (a test module's body) as a fresh session with the suite's hooks."""
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_case.py").write_text(PRELUDE + textwrap.dedent(tests))
    return processes.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        timeout=SESSION_TIMEOUT_SECONDS,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        text=True,
    )


def pids(tmp_path: Path) -> dict[str, int]:
    """The pids the session's tests wrote down, by test."""
    return {path.stem: int(path.read_text()) for path in tmp_path.glob("*.pid")}


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def assert_gone(pid: int) -> None:
    # The session killed it before exiting; give the kernel a moment to take it away.
    deadline = time.monotonic() + 5
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pid), f"pid {pid} outlived the session"


def test_the_platform_has_what_the_leak_check_reads():
    # The session's leak check reads /proc; where there is none it cannot work, and
    # this says so instead of the suite passing without it.
    assert Path("/proc/self/stat").is_file(), f"no /proc on {sys.platform}"


def test_processes_left_running_fail_the_session_and_are_killed(tmp_path):
    result = run_session(
        tmp_path,
        """
        def test_a_child_left_running():
            child = subprocess.Popen(["sleep", "301"])
            write_pid("child", child.pid)

        def test_an_orphaned_grandchild():
            # The shell exits at once; its background sleep would be reparented to PID 1
            # and escape a walk of the process tree, were the session not a subreaper.
            subprocess.run(["sh", "-c", f"sleep 302 & echo $! > {HERE}/orphan.pid"], check=True)

        def test_a_started_process_nobody_stopped():
            processes.start(["sh", "-c", f"sleep 303 & echo $! > {HERE}/group.pid; wait"])
            wait_for_pid("group")
        """,
    )
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, result.stdout + result.stderr
    # The tests themselves passed: the check failed the run.
    assert "3 passed" in result.stdout, result.stdout
    assert "processes left running" in result.stdout
    left = pids(tmp_path)
    assert set(left) == {"child", "orphan", "group"}
    assert f"pid {left['child']} " in result.stdout
    assert f"pid {left['orphan']} " in result.stdout
    # Registered with processes.start: named by its command, killed with its group.
    assert "started and never stopped: ['sh', '-c', 'sleep 303" in result.stdout
    for pid in left.values():
        assert_gone(pid)


def test_stop_ends_the_whole_group_and_the_session_has_nothing_left(tmp_path):
    # A clean session passing is what every run of this suite shows; here, in this very
    # process, that `stop` reaches the grandchild a careless stop of the child would miss.
    pid_file = tmp_path / "grandchild.pid"
    child = processes.start(["sh", "-c", f"sleep 304 & echo $! > {pid_file}; wait"])
    deadline = time.monotonic() + 30
    while not (pid_file.exists() and pid_file.read_text().strip()):
        assert time.monotonic() < deadline, "the shell did not start its sleep"
        time.sleep(0.05)
    grandchild = int(pid_file.read_text())
    assert grandchild in {info.pid for info in processes.descendants()}
    processes.stop(child, grace=5)
    assert_gone(grandchild)
    assert child.pid not in {info.pid for info in processes.descendants()}


def test_a_terminated_session_tears_down_and_stops_its_processes(tmp_path):
    # SIGTERM (a cancelled CI job, `timeout`) becomes the KeyboardInterrupt of a Ctrl-C:
    # the fixture's teardown runs and stops its process; nothing is left behind.
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_case.py").write_text(
        PRELUDE
        + textwrap.dedent(
            """
            import pytest

            @pytest.fixture
            def server():
                child = processes.start(["sleep", "305"])
                write_pid("server", child.pid)
                yield child
                processes.stop(child, grace=5)
                (HERE / "torn-down").write_text("yes")

            def test_waits_forever(server):
                write_pid("test", os.getpid())
                time.sleep(300)
            """
        )
    )
    session = processes.start(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + SESSION_TIMEOUT_SECONDS
        # Signalled once the test runs: an interrupt inside a fixture's setup is another
        # story (that fixture has no teardown; the session-end check kills its process).
        while not (tmp_path / "test.pid").exists():
            assert time.monotonic() < deadline and session.poll() is None, "the test never ran"
            time.sleep(0.05)
        session.send_signal(signal.SIGTERM)  # to pytest alone, not its group
        output, _ = session.communicate(timeout=SESSION_TIMEOUT_SECONDS)
    finally:
        processes.kill(session)
    assert session.returncode == pytest.ExitCode.INTERRUPTED, output
    assert (tmp_path / "torn-down").read_text() == "yes"
    assert "processes left running" not in output
    assert_gone(pids(tmp_path)["server"])
