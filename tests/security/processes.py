"""Which processes a test left behind.

``become_subreaper()`` makes the test process the reaper of every orphan it creates (Linux
PR_SET_CHILD_SUBREAPER): a daemon that double-forks and calls setsid() to escape its job is
then re-parented to the test process instead of init, so ``leftovers()`` (the live
descendants of the test process) finds it, and processes of other programs on the machine
never count.
"""

from __future__ import annotations

import ctypes
import os
import time

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def _stat(pid: int) -> tuple[str, str, int] | None:
    """(name, state, parent pid), or None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode("utf-8", "replace")
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return stat[stat.index("(") + 1:stat.rindex(")")], fields[0], int(fields[1])


def _reap() -> None:
    """Collect the exit status of zombies re-parented to us (orphans of finished jobs)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _live_descendants() -> dict[int, str]:
    """pid -> "pid (name, state S)" of every live (not zombie) descendant of this process."""
    me = os.getpid()
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (info := _stat(int(entry))) is not None:
            parents[int(entry)] = info
    found, frontier = {}, [me]
    while frontier:
        parent = frontier.pop()
        for pid, (name, state, ppid) in parents.items():
            if ppid == parent and pid != me:
                frontier.append(pid)
                if state != "Z":
                    found[pid] = f"{pid} ({name}, state {state})"
    return found


def descendants() -> set[int]:
    """The pids of this process's live descendants now (e.g. long-lived helpers of earlier tests)."""
    return set(_live_descendants())


def leftovers(settle: float = 3.0, before: set[int] = frozenset()) -> list[str]:
    """Live descendants of this process that are not in ``before``, waiting up to ``settle``
    seconds for ones being torn down."""
    deadline = time.monotonic() + settle
    while True:
        _reap()
        found = [text for pid, text in _live_descendants().items() if pid not in before]
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)
