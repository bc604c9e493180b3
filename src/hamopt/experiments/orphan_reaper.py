r"""A watchdog that ends the processes a sweep driver started once the driver is gone.

``python -m hamopt.experiments.orphan_reaper PID`` (started by the driver with a pipe on its
standard input) records, once a second, the processes descending from the driver ``PID`` that
were not there when it started, with their start times. When its standard input reaches end of
file — the driver closed the pipe, or died, even by SIGKILL, and the kernel closed it — it sends
SIGKILL to every recorded process that still runs (same pid, same start time, so a reused pid is
never hit), then exits. The Ray backend starts one next to each local Ray instance it starts:
Ray's own agents may stay behind when the driver is killed.

Linux only (it reads ``/proc``); :func:`start_reaper` returns None elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

__all__ = ["descendants", "start_reaper", "stop_reaper"]

POLL_S = 1.0


def _stat(pid: int) -> tuple[int, int] | None:
    """``(parent pid, start time)`` of ``pid``, or None when it is gone or a zombie."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        return None
    return int(fields[1]), int(fields[19])


def descendants(root: int) -> dict[int, int]:
    """Every live process descending from ``root``: pid → start time (``/proc``)."""
    children: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None:
                children.setdefault(st[0], []).append(int(entry))
                starts[int(entry)] = st[1]
    found: dict[int, int] = {}
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found[child] = starts[child]
                stack.append(child)
    return found


def watch(driver: int) -> None:
    """Record the driver's new descendants until stdin closes; then SIGKILL those still alive."""
    me = os.getpid()
    before = set(descendants(driver))
    os.write(sys.stdout.fileno(), b"1")  # ready: what the driver starts from now on is watched
    recorded: dict[int, int] = {}
    while True:
        ready, _, _ = select.select([sys.stdin.fileno()], [], [], POLL_S)
        if ready and not os.read(sys.stdin.fileno(), 4096):
            break
        for pid, start in descendants(driver).items():
            if pid != me and pid not in before:
                recorded[pid] = start
    for pid, start in recorded.items():
        st = _stat(pid)
        if st is not None and st[1] == start:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def start_reaper() -> subprocess.Popen[bytes] | None:
    """Start the watchdog for this process (None off Linux); :func:`stop_reaper` when done.

    Closing its standard input (or this process dying) makes the watchdog end what this process started
    after the call. The watchdog runs in its own session, so a Ctrl-C of the driver's terminal
    does not stop it before it has done its work.
    """
    if not sys.platform.startswith("linux"):
        return None
    proc = subprocess.Popen(
        [sys.executable, "-m", "hamopt.experiments.orphan_reaper", str(os.getpid())],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdout.read(1)  # wait until it has seen what ran before
    proc.stdout.close()
    return proc


def stop_reaper(proc: subprocess.Popen[bytes] | None) -> None:
    """Close the watchdog's pipe (it ends what is left) and wait for it."""
    if proc is None:
        return
    assert proc.stdin is not None
    proc.stdin.close()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


if __name__ == "__main__":
    watch(int(sys.argv[1]))
