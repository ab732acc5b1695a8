"""What one job may use (``Limits``), and the resource limits applied in the child between fork
and exec (``limit_resources``): address space, CPU time, file size, open files, no core dumps,
processes, and death with its parent."""

from __future__ import annotations

import functools
import os
import resource
import signal
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """What one job may use. ``memory_mb`` is enforced twice: as the address-space limit
    (RLIMIT_AS: an allocation beyond it fails at once, with a MemoryError in Python) and by a
    watchdog that kills the whole process group when its resident memory exceeds it, or, for an
    isolated job whose cgroup has the memory controller, by the cgroup's limit instead of the
    watchdog. ``address_space=False`` keeps only the watchdog (or the cgroup): the CUDA driver reserves far more
    address space than it uses, so a CUDA job cannot start under RLIMIT_AS."""

    wall_seconds: float = 600.0
    memory_mb: int | None = 4096  # None: no memory limit
    address_space: bool = True  # also apply memory_mb as RLIMIT_AS
    cpu_seconds: int | None = None  # RLIMIT_CPU; None: wall_seconds x threads + slack
    file_size_mb: int | None = 1024  # largest file the job may write (RLIMIT_FSIZE)
    open_files: int = 512
    # processes and threads of the job (cgroup pids.max; torch starts a few threads per core).
    # Also RLIMIT_NPROC for a non-root user, counted on top of the tasks the user already runs.
    max_processes: int = 256

    def __post_init__(self) -> None:
        if self.wall_seconds <= 0:
            raise ValueError(f"wall_seconds={self.wall_seconds} must be positive")
        if self.memory_mb is not None and self.memory_mb < 256:
            raise ValueError(f"memory_mb={self.memory_mb} is too small to start Python (>= 256)")
        if self.max_processes < 4:
            raise ValueError(f"max_processes={self.max_processes} is too small to start a job (>= 4)")


PR_SET_PDEATHSIG = 1


@functools.cache
def libc_prctl() -> Callable[..., int] | None:
    """libc's prctl, loaded in the parent (loading a library between fork and exec could deadlock)."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux
        return None


def limit_resources(limits: Limits, cpu_seconds: int, parent: int, *, nproc: int | None = None,
                    join: Callable[[], None] | None = None,
                    seccomp: Callable[[], None] | None = None) -> Callable[[], None]:
    prctl = libc_prctl()

    def apply() -> None:  # runs in the child between fork and exec
        # Linux kills the child when its parent dies, even by kill -9: a dead coordinator
        # leaves no worker behind (the group is killed on every other exit path).
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != parent:  # the parent died before prctl took effect
                os._exit(1)
        if join is not None:  # into the job's cgroups, before anything else runs
            join()
        mb = 1024 * 1024
        if limits.memory_mb is not None and limits.address_space:
            resource.setrlimit(resource.RLIMIT_AS, (limits.memory_mb * mb, limits.memory_mb * mb))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))
        if limits.file_size_mb is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_size_mb * mb, limits.file_size_mb * mb))
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if nproc is not None:
            resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
        if seccomp is not None:  # last: it also forbids what the lines above might need
            seccomp()

    return apply
