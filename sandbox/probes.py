"""Scratch folders for the sandbox's probes (``sandbox.isolation`` tries each layer once in a
job of its own): each is locked while in use, and the folders of probers that were killed are
removed by the next prober."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

PROBE_PREFIX = "archagent-probe-"  # the probes' scratch folders in the temp folder


@contextlib.contextmanager
def probe_scratch() -> Iterator[str]:
    """A scratch folder for one probe, locked (flock) while it is used: a prober killed before it
    removed its folder leaves it unlocked, and the next prober removes it (remove_left_probes)."""
    with tempfile.TemporaryDirectory(prefix=PROBE_PREFIX, ignore_cleanup_errors=True) as scratch:
        fd = os.open(scratch, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield scratch
        finally:
            os.close(fd)


def remove_left_probes(min_age: float = 1.0) -> None:
    """Remove the probe folders nobody holds locked (their prober was killed), once a second old
    (a new one is locked within microseconds of being made)."""
    root = Path(tempfile.gettempdir())
    try:
        entries = [e for e in root.iterdir() if e.name.startswith(PROBE_PREFIX) and e.is_dir()]
    except OSError:
        return
    now = time.time()
    for entry in entries:
        try:
            if now - entry.stat().st_mtime < min_age or entry.stat().st_uid != os.getuid():
                continue
            fd = os.open(entry, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # its prober is at work
        finally:
            os.close(fd)
        shutil.rmtree(entry, ignore_errors=True)
