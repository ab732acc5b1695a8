"""Run one untrusted job as a child process: its own process group, a clean environment,
resource limits, a wall-clock timeout that kills the whole group, and a private channel.

The child's stdout and stderr are only logs (the last lines are kept for error messages).
Messages meant for the parent travel on a separate pipe whose file descriptor the child
finds in ``$ARCHAGENT_CHANNEL_FD``; a key for signing them arrives once on the pipe in
``$ARCHAGENT_KEY_FD``. The parent gets each line through ``on_message``. What the
messages mean is not this module's business: it knows nothing of models or metrics.

This is the process boundary of Foundation II; the hardened sandbox (network and file
system isolation, cgroups, seccomp) will wrap the same call.
"""

from __future__ import annotations

import collections
import functools
import os
import resource
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

CHANNEL_FD_ENV = "ARCHAGENT_CHANNEL_FD"  # the child writes its messages to this descriptor
KEY_FD_ENV = "ARCHAGENT_KEY_FD"  # the child reads its message key here once, before running anything untrusted

# Only these variables reach the child; everything else (API keys, tokens, proxies, cloud
# credentials) stays out. Values are copied from the parent when set there.
ENV_ALLOWLIST = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                 "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "LD_LIBRARY_PATH")


@dataclass(frozen=True)
class Limits:
    """What one job may use. ``memory_mb`` is enforced twice: as the address-space limit
    (RLIMIT_AS: an allocation beyond it fails at once, with a MemoryError in Python) and by a
    watchdog that kills the whole process group when its resident memory exceeds it.
    ``address_space=False`` keeps only the watchdog: the CUDA driver reserves far more
    address space than it uses, so a CUDA job cannot start under RLIMIT_AS."""

    wall_seconds: float = 600.0
    memory_mb: int | None = 4096  # None: no memory limit
    address_space: bool = True  # also apply memory_mb as RLIMIT_AS
    cpu_seconds: int | None = None  # RLIMIT_CPU; None: wall_seconds x threads + slack
    file_size_mb: int | None = 1024  # largest file the job may write (RLIMIT_FSIZE)
    open_files: int = 512

    def __post_init__(self) -> None:
        if self.wall_seconds <= 0:
            raise ValueError(f"wall_seconds={self.wall_seconds} must be positive")
        if self.memory_mb is not None and self.memory_mb < 256:
            raise ValueError(f"memory_mb={self.memory_mb} is too small to start Python (>= 256)")


@dataclass
class ProcessResult:
    returncode: int | None
    timed_out: bool
    killed_by: str | None  # signal name when a signal ended the process
    wall_seconds: float
    tail: list[str] = field(default_factory=list)  # last lines of stdout/stderr
    memory_exceeded: bool = False  # the watchdog killed the group for its resident memory
    peak_rss_mb: float = 0.0  # largest resident memory of the process group seen by the watchdog

    @property
    def tail_text(self) -> str:
        return "\n".join(self.tail)


def clean_env(extra: Mapping[str, str] | None = None, home: Path | None = None) -> dict[str, str]:
    env = {k: os.environ[k] for k in ENV_ALLOWLIST if k in os.environ}
    env.setdefault("PATH", "/usr/bin:/bin")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    if home is not None:
        env["HOME"] = str(home)
        env["TMPDIR"] = str(home)
    env.update(extra or {})
    return env


PR_SET_PDEATHSIG = 1


@functools.cache
def _prctl() -> Callable[..., int] | None:
    """libc's prctl, loaded in the parent (loading a library between fork and exec could deadlock)."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux
        return None


def _limit_resources(limits: Limits, cpu_seconds: int, parent: int) -> Callable[[], None]:
    prctl = _prctl()

    def apply() -> None:  # runs in the child between fork and exec
        # Linux kills the child when its parent dies, even by kill -9: a dead coordinator
        # leaves no worker behind (the group is killed on every other exit path).
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != parent:  # the parent died before prctl took effect
                os._exit(1)
        mb = 1024 * 1024
        if limits.memory_mb is not None and limits.address_space:
            resource.setrlimit(resource.RLIMIT_AS, (limits.memory_mb * mb, limits.memory_mb * mb))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))
        if limits.file_size_mb is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_size_mb * mb, limits.file_size_mb * mb))
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


class ChildProcess:
    """One child; ``start()`` then ``wait()``; ``kill()`` from any thread."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        limits: Limits,
        key: bytes,
        on_message: Callable[[bytes], None],
        threads: int = 1,
        tail_lines: int = 40,
    ) -> None:
        self.argv, self.cwd, self.env, self.limits, self.key = list(argv), cwd, dict(env), limits, key
        self.on_message = on_message
        self.cpu_seconds = limits.cpu_seconds or int(limits.wall_seconds * max(1, threads) + 30)
        self._tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
        self._tail_lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._threads: list[threading.Thread] = []
        self._timed_out = threading.Event()
        self._memory_exceeded = threading.Event()
        self._peak_rss = 0
        self._started = 0.0

    def start(self) -> None:
        channel_r, channel_w = os.pipe()
        key_r, key_w = os.pipe()
        env = self.env | {CHANNEL_FD_ENV: str(channel_w), KEY_FD_ENV: str(key_r)}
        self._started = time.monotonic()
        try:
            self._proc = subprocess.Popen(
                self.argv, cwd=self.cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True, pass_fds=(channel_w, key_r),
                preexec_fn=_limit_resources(self.limits, self.cpu_seconds, os.getpid()),
            )
        except BaseException:
            for fd in (channel_r, key_w):
                os.close(fd)
            raise
        finally:
            os.close(channel_w)
            os.close(key_r)
        with os.fdopen(key_w, "wb") as fh:  # the key, then EOF
            try:
                fh.write(self.key)
            except BrokenPipeError:  # the child died before reading it; wait() reports why
                pass
        self._threads = [
            threading.Thread(target=self._read_channel, args=(channel_r,), daemon=True),
            threading.Thread(target=self._read_logs, daemon=True),
            threading.Thread(target=self._watchdog, daemon=True),
            threading.Thread(target=self._memory_watchdog, daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _read_channel(self, fd: int) -> None:
        with os.fdopen(fd, "rb") as fh:
            for line in fh:
                self.on_message(line)

    def _read_logs(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for raw in self._proc.stdout:
            text = raw.decode("utf-8", "replace").rstrip("\n")
            with self._tail_lock:
                self._tail.append(text[:2000])

    def _watchdog(self) -> None:
        assert self._proc is not None
        try:
            self._proc.wait(timeout=self.limits.wall_seconds)
        except subprocess.TimeoutExpired:
            self._timed_out.set()
            self.kill()

    def _memory_watchdog(self) -> None:
        assert self._proc is not None
        limit = None if self.limits.memory_mb is None else self.limits.memory_mb * 1024 * 1024
        while self._proc.poll() is None:
            rss = group_rss_bytes(self._proc.pid)
            self._peak_rss = max(self._peak_rss, rss)
            if limit is not None and rss > limit:
                self._memory_exceeded.set()
                self.kill()
                return
            time.sleep(MEMORY_POLL_SECONDS)

    def kill(self) -> None:
        """Kill the whole process group (the job and anything it started)."""
        if self._proc is None:
            return
        try:
            os.killpg(self._proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def wait(self) -> ProcessResult:
        assert self._proc is not None, "start() first"
        returncode = self._proc.wait()
        self.kill()  # whatever the job left behind in its group goes too
        for t in self._threads:
            t.join(timeout=10)
        killed_by = signal.Signals(-returncode).name if returncode is not None and returncode < 0 else None
        with self._tail_lock:
            tail = list(self._tail)
        return ProcessResult(returncode=returncode, timed_out=self._timed_out.is_set(), killed_by=killed_by,
                             wall_seconds=time.monotonic() - self._started, tail=tail,
                             memory_exceeded=self._memory_exceeded.is_set(),
                             peak_rss_mb=round(self._peak_rss / (1024 * 1024), 1))


MEMORY_POLL_SECONDS = 0.2
_PAGE = os.sysconf("SC_PAGE_SIZE")


def group_rss_bytes(pgid: int) -> int:
    """Resident memory of every process in process group ``pgid`` (Linux /proc; 0 elsewhere)."""
    total = 0
    try:
        entries = os.listdir("/proc")
    except OSError:
        return 0
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
            # fields after the command name, which is in parentheses and may hold spaces
            fields = stat[stat.rindex(b")") + 2:].split()
            if int(fields[2]) != pgid:  # field 5, pgrp
                continue
            with open(f"/proc/{entry}/statm", "rb") as fh:
                total += int(fh.read().split()[1]) * _PAGE
        except (OSError, ValueError, IndexError):
            continue  # the process ended meanwhile
    return total
