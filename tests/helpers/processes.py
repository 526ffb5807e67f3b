"""Child processes that cannot outlive the test run, and the check that none did.

Every process a test starts goes through `start` (or `run` for one that is waited on):

* it leads a process group of its own, so stopping it reaches whatever it starts in turn,
  and a Ctrl-C in the terminal reaches pytest only, whose teardown then stops it in order;
* the kernel SIGKILLs it if the test run dies (PR_SET_PDEATHSIG), which covers what no
  finalizer can: SIGKILL, an OOM kill, a crash of the interpreter;
* it is registered until stopped, so the end of the session (and atexit, the last resort)
  can kill whatever a failed or interrupted test left behind.

`leftovers` walks /proc for the descendants of this process that are still alive; the
session-end hook in tests/conftest.py fails the run when there are any. With
`become_subreaper`, an orphan (a grandchild whose parent exited, a daemon that
double-forked, such as podman's conmon) is reparented to the test run instead of PID 1,
so the walk sees it too.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from consumer.dev.local_broker import die_with_parent_preexec

PR_SET_CHILD_SUBREAPER = 36  # from <linux/prctl.h>

# A graceful stop of anything the tests run (the service's own shutdown deadline is 25 s,
# a JVM flushes its logs in a few) fits in this; past it the group is SIGKILLed.
STOP_GRACE_SECONDS = 40.0

# Processes that are exiting at the very moment the session ends (a JVM's last flush, a
# container's conmon after `podman rm`) get this long before they count as left behind.
EXIT_GRACE_SECONDS = 2.0

_running: set[subprocess.Popen] = set()
_running_lock = threading.Lock()


def start(command: list[str], **popen_kwargs) -> subprocess.Popen:
    """subprocess.Popen in a process group of its own that dies with the test run.

    PR_SET_PDEATHSIG fires when the *thread* that forked the child ends, so it is only
    asked for from the main thread, which lives as long as the run; a process started
    from another thread still has its group, the registry and the session-end check.
    """
    if threading.current_thread() is threading.main_thread():
        popen_kwargs.setdefault("preexec_fn", die_with_parent_preexec())
    process = subprocess.Popen(command, start_new_session=True, **popen_kwargs)
    with _running_lock:
        _running.add(process)
    return process


def stop(
    process: subprocess.Popen,
    grace: float = STOP_GRACE_SECONDS,
    stop_signal: int = signal.SIGTERM,
) -> int:
    """Ask the process group to stop, SIGKILL it after `grace`; the leader's exit status.
    Whatever is left of the group once the leader has gone is killed too. Idempotent.

    The group is only signalled while the leader is not yet reaped: until then its pid,
    and so the group id, cannot be handed to another process."""
    if process.returncode is None:
        if not _exited(process):
            signal_group(process, stop_signal)
            if not _wait_exited(process, grace):
                signal_group(process, signal.SIGKILL)
                _wait_exited(process, None)
        signal_group(process, signal.SIGKILL)  # what the leader left behind in its group
        process.wait()
    with _running_lock:
        _running.discard(process)
    return process.returncode


def kill(process: subprocess.Popen) -> int:
    """SIGKILL the group at once, as a crash or an OOM kill would; the exit status."""
    return stop(process, grace=0, stop_signal=signal.SIGKILL)


def run(
    command: list[str], timeout: float, **popen_kwargs
) -> subprocess.CompletedProcess[bytes | str]:
    """subprocess.run's capture-and-wait, with `start`'s group: on a timeout (or any
    exception, KeyboardInterrupt included) the whole group is killed, not only the
    direct child, and the timeout is raised as usual."""
    popen_kwargs.setdefault("stdout", subprocess.PIPE)
    popen_kwargs.setdefault("stderr", subprocess.PIPE)
    process = start(command, **popen_kwargs)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        kill(process)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def kill_registered() -> list[subprocess.Popen]:
    """SIGKILL the group of every process `start` started and nobody stopped; the ones
    that were still running."""
    with _running_lock:
        registered = list(_running)
    running = [process for process in registered if not _exited(process)]
    for process in registered:
        kill(process)  # an exited leader's group may still hold its children
    return running


atexit.register(kill_registered)


def _exited(process: subprocess.Popen) -> bool:
    """Whether the leader has exited, without reaping it (WNOWAIT)."""
    if process.returncode is not None:
        return True
    try:
        found = os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:  # reaped elsewhere
        return True
    return found is not None


def _wait_exited(process: subprocess.Popen, timeout: float | None) -> bool:
    deadline = None if timeout is None else time.monotonic() + timeout
    while not _exited(process):
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def signal_group(process: subprocess.Popen, signum: int) -> None:
    """`signum` to the process's group, unless the leader has been reaped."""
    # The group id is the leader's pid (start_new_session); a group outlives its leader
    # as long as one member does. ESRCH means none is left.
    if process.returncode is not None:
        return  # reaped: its pid may belong to someone else by now
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


# --- the session-end check -------------------------------------------------------------


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    ppid: int
    state: str
    command: str

    def __str__(self) -> str:
        return f"pid {self.pid} (parent {self.ppid}): {self.command}"


def become_subreaper() -> bool:
    """Make orphaned descendants children of this process rather than of PID 1 (Linux).
    True when it took effect."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def descendants(root: int | None = None) -> list[ProcessInfo]:
    """Every live process below `root` (default: this one), from /proc; zombies (exited,
    not yet reaped) are not alive and are left out."""
    root = os.getpid() if root is None else root
    children: dict[int, list[ProcessInfo]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        info = _read(entry)
        if info is not None:
            children.setdefault(info.ppid, []).append(info)
    found: list[ProcessInfo] = []
    pending = [root]
    while pending:
        for child in children.get(pending.pop(), []):
            pending.append(child.pid)
            if child.state not in ("Z", "X"):
                found.append(child)
    return found


def leftovers(grace: float = EXIT_GRACE_SECONDS) -> list[ProcessInfo]:
    """Descendants still alive after `grace` seconds. Zombie children are reaped on the
    way: an orphan adopted by this subreaper has nobody else to do it."""
    deadline = time.monotonic() + grace
    while True:
        _reap_zombie_children()
        alive = descendants()
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.1)


def kill_all(processes: list[ProcessInfo]) -> None:
    for info in processes:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(info.pid, signal.SIGKILL)
    _reap_zombie_children()


def _reap_zombie_children() -> None:
    for info in _direct_children():
        if info.state == "Z":
            with contextlib.suppress(ChildProcessError):
                os.waitpid(info.pid, os.WNOHANG)


def _direct_children() -> list[ProcessInfo]:
    me = os.getpid()
    return [
        info
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and (info := _read(entry)) is not None and info.ppid == me
    ]


def _read(entry: Path) -> ProcessInfo | None:
    try:
        stat = (entry / "stat").read_text()
        command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:  # it exited while we looked
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses; the last ')' ends it.
    name_end = stat.rindex(")")
    state, ppid = stat[name_end + 2 :].split()[:2]
    name = stat[stat.index("(") + 1 : name_end]
    return ProcessInfo(int(entry.name), int(ppid), state, command.strip() or f"[{name}]")
