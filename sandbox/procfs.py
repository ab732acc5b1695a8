"""What Linux's /proc says about processes and what a folder holds on disk: the watchdogs of
``sandbox.process`` read the job's resident memory, its processes and its scratch use here."""

from __future__ import annotations

import os
from pathlib import Path

PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def group_rss_bytes(pgid: int) -> int:
    """Resident memory of every process in process group ``pgid`` (Linux /proc; 0 elsewhere)."""
    return sum(rss for _, pgrp, _, rss in scan_proc().values() if pgrp == pgid) * PAGE_BYTES


def stat_fields(pid: int | str) -> list[bytes] | None:
    """The fields of /proc/PID/stat after the command name (field 3, the state, first)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
        return stat[stat.rindex(b")") + 2:].split()
    except (OSError, ValueError):
        return None


def scan_proc() -> dict[int, tuple[int, int, int, int]]:
    """pid -> (parent pid, process group, start time, resident pages) of every live process."""
    out = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return out
    for entry in entries:
        if not entry.isdigit():
            continue
        f = stat_fields(entry)
        if f is None or len(f) < 22 or f[0] in (b"Z", b"X"):
            continue
        try:  # fields 4 ppid, 5 pgrp, 22 starttime, 24 rss
            out[int(entry)] = (int(f[1]), int(f[2]), int(f[19]), int(f[21]))
        except ValueError:
            continue
    return out


def start_if_alive(pid: int) -> int | None:
    """The start time of ``pid`` when it runs (not a zombie), else None."""
    f = stat_fields(pid)
    if f is None or len(f) < 20 or f[0] in (b"Z", b"X"):
        return None
    try:
        return int(f[19])
    except ValueError:
        return None


def pidns_of(pid: int | str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def user_tasks(uid: int) -> int:
    """Tasks (threads) the user runs now: what RLIMIT_NPROC counts against."""
    total = 0
    try:
        entries = os.listdir("/proc")
    except OSError:
        return 0
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as fh:
                status = dict(line.split(":", 1) for line in fh if ":" in line)
            if int(status["Uid"].split()[0]) == uid:
                total += int(status["Threads"])
        except (OSError, KeyError, ValueError, IndexError):
            continue
    return total


def scratch_bytes(root: Path) -> int:
    """Disk used by the files under ``root``: each inode once, symlinks not followed, the larger
    of a file's size and its allocated blocks (sparse and preallocated files both count)."""
    total = 0
    seen: set[tuple[int, int]] = set()
    stack = [str(root)]
    while stack:
        try:
            it = os.scandir(stack.pop())
        except OSError:
            continue
        with it:
            for entry in it:
                try:
                    st = entry.stat(follow_symlinks=False)
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                except OSError:
                    continue
                if st.st_nlink > 1:
                    if (st.st_dev, st.st_ino) in seen:
                        continue
                    seen.add((st.st_dev, st.st_ino))
                total += max(st.st_size, getattr(st, "st_blocks", 0) * 512)
    return total
