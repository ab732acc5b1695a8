"""Run one untrusted job as a child process: its own process group, a clean environment,
resource limits, a wall-clock timeout that kills the whole group, and a private channel.

The child's stdout and stderr are only logs (the last lines are kept for error messages).
Messages meant for the parent travel on a separate pipe whose file descriptor the child
finds in ``$ARCHAGENT_CHANNEL_FD``; a key for signing them arrives once on the pipe in
``$ARCHAGENT_KEY_FD``. The parent gets each line through ``on_message``. What the
messages mean is not this module's business: it knows nothing of models or metrics.

With ``isolation=None`` that is all: a process boundary. With an ``Isolation``
(``sandbox.isolation``) the same call applies every hardened layer this machine has:
bubblewrap (or unshare) namespaces, a seccomp socket filter, cgroups for memory, processes
and CPU, a scratch-disk quota, and a kill that leaves no process of the job behind (daemons
included); ``ProcessResult.layers`` names what was applied. ``sandbox.environment.redact`` keeps the trusted
process's secrets out of the log lines it keeps.

A child started *held* (``ChildProcess(..., held=True)``) gets every limit and layer at once,
but its key pipe stays open, so it can prepare whatever needs no key (a worker imports its
libraries) and then blocks reading the key; ``release(key)`` writes the key and closes the
pipe. Its wall-clock limit and ``ProcessResult.wall_seconds`` count from the release; a held
child that is never released is ended by ``kill()`` and ``wait()`` like any other. A held
child prepares at the normal CPU weight: at the smallest one, on a loaded machine, it was still
importing when its job came (the job then timed out) and, killed with its coordinator, took
longer than 15 s to exit.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sandbox import cgroups
from sandbox.environment import redact_with, secret_values, without_secret_names
from sandbox.limits import Limits, limit_resources
from sandbox.procfs import PAGE_BYTES, group_rss_bytes, pidns_of, scan_proc, scratch_bytes, start_if_alive, user_tasks
from sandbox.isolation import Isolation, Plan, bwrap_argv, check_isolation, unshare_argv
from sandbox.seccomp import install_in_child, program as seccomp_program

CHANNEL_FD_ENV = "ARCHAGENT_CHANNEL_FD"  # the child writes its messages to this descriptor
KEY_FD_ENV = "ARCHAGENT_KEY_FD"  # the child reads its message key here once, before running anything untrusted


@dataclass
class ProcessResult:
    returncode: int | None
    timed_out: bool
    killed_by: str | None  # signal name when a signal ended the process
    wall_seconds: float
    tail: list[str] = field(default_factory=list)  # last lines of stdout/stderr
    memory_exceeded: bool = False  # the watchdog killed the group for its resident memory
    peak_rss_mb: float = 0.0  # largest resident memory of the process group seen by the watchdog
    layers: tuple[str, ...] = ()  # the isolation layers applied to this job (sandbox.isolation.Layer names)
    disk_exceeded: bool = False  # the scratch quota watchdog killed the job
    pids_limited: bool = False  # the job hit its process limit (a fork was refused)
    oom_killed: bool = False  # the cgroup's memory limit killed a process of the job

    @property
    def tail_text(self) -> str:
        return "\n".join(self.tail)


class ChildProcess:
    """One child; ``start()`` then ``wait()``; ``kill()`` from any thread.

    With ``isolation`` (``sandbox.isolation.Isolation``) the job runs under every layer this
    machine has (``ProcessResult.layers`` says which); ``start()`` raises IsolationUnavailable,
    before any process starts, when a layer the isolation insists on is missing.

    With ``held=True`` the key is not sent at ``start()``: the child waits for it (reading its key
    pipe until EOF) until ``release(key)``; the wall-clock limit counts from then. ``key`` may then
    be left out here and given to ``release``."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        limits: Limits,
        key: bytes | None = None,
        on_message: Callable[[bytes], None],
        threads: int = 1,
        tail_lines: int = 40,
        isolation: Isolation | None = None,
        held: bool = False,
    ) -> None:
        if key is None and not held:
            raise ValueError("key=None: a child that is not held gets its key at start()")
        self.argv, self.cwd, self.env, self.limits, self.key = list(argv), cwd, dict(env), limits, key
        self.held = held
        self._key_w: int | None = None  # a held child's key pipe, until release()
        self._hold_lock = threading.Lock()
        self._released = threading.Event()
        self._clock = threading.Event()  # the wall clock may start: released, or the job ended
        self.on_message = on_message
        self.threads = max(1, threads)
        self.isolation = isolation
        self.cpu_seconds = limits.cpu_seconds or int(limits.wall_seconds * max(1, threads) + 30)
        self._tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
        self._tail_lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._threads: list[threading.Thread] = []
        self._timed_out = threading.Event()
        self._memory_exceeded = threading.Event()
        self._disk_exceeded = threading.Event()
        self._peak_rss = 0
        self._started = 0.0
        self._ended = threading.Event()  # wakes the watchdogs when the job has ended
        self._secrets: list[str] = []
        self._plan: Plan | None = None
        self._cgroup: cgroups.JobCgroup | None = None
        self._job: dict[int, int] = {}  # pid -> start time of every process seen in the job
        self._job_lock = threading.Lock()
        self._pidns: str | None = None  # the job's pid namespace, once seen

    # ------------------------------------------------------------ start

    def start(self) -> None:
        self._secrets = secret_values()
        argv, env, extra_fds = self.argv, self.env, []
        join = install = nproc = None
        if self.isolation is not None:
            self._plan = plan = check_isolation(self.isolation)  # raises before anything starts
            env = without_secret_names(self.env)
            try:
                self._cgroup = self._make_cgroup(plan)
                join = self._cgroup.join if self._cgroup is not None else None
                seccomp_fd = None
                if plan.seccomp and plan.backend == "bwrap":  # bwrap installs it right before exec
                    seccomp_fd = _pipe_holding(seccomp_program())
                    extra_fds.append(seccomp_fd)
                elif plan.seccomp:
                    install = install_in_child()
                argv = self._wrap(plan, seccomp_fd)
                if os.geteuid() != 0:  # the kernel counts every task of the user, and ignores the limit for root
                    nproc = user_tasks(os.getuid()) + self.limits.max_processes
            except BaseException:
                self._release(extra_fds)
                raise
        channel_r, channel_w = os.pipe()
        key_r, key_w = os.pipe()
        env = env | {CHANNEL_FD_ENV: str(channel_w), KEY_FD_ENV: str(key_r)}
        self._started = time.monotonic()
        try:
            self._proc = subprocess.Popen(
                argv, cwd=self.cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
                pass_fds=(channel_w, key_r, *extra_fds),
                preexec_fn=limit_resources(self.limits, self.cpu_seconds, os.getpid(), nproc=nproc, join=join,
                                            seccomp=install),
            )
        except BaseException:
            for fd in (channel_r, key_w):
                os.close(fd)
            self._release(extra_fds)
            raise
        finally:
            os.close(channel_w)
            os.close(key_r)
        for fd in extra_fds:
            os.close(fd)
        if self._cgroup is not None:
            self._cgroup.close_fds()  # the child is in its cgroups already
        if self.held:
            self._key_w = key_w  # release() sends the key
        else:
            _send_key(key_w, self.key)
        self._threads = [
            threading.Thread(target=self._read_channel, args=(channel_r,), daemon=True),
            threading.Thread(target=self._read_logs, daemon=True),
            threading.Thread(target=self._watchdog, daemon=True),
            threading.Thread(target=self._memory_watchdog,
                             daemon=True),
        ]
        if self._plan is not None and self._plan.scratch_quota_mb is not None:
            self._threads.append(threading.Thread(target=self._quota_watchdog, daemon=True))
        for t in self._threads:
            t.start()

    def _make_cgroup(self, plan: Plan) -> cgroups.JobCgroup | None:
        memory = self.limits.memory_mb
        hierarchies = {c: h for c, h in plan.cgroups.items() if c != "memory" or memory is not None}
        if not hierarchies:
            return None
        try:
            return cgroups.JobCgroup(hierarchies, memory_mb=memory, max_processes=self.limits.max_processes,
                                     cpus=float(self.threads))
        except OSError:  # the hierarchy changed since detection: run without (layers says so)
            return None

    def _wrap(self, plan: Plan, seccomp_fd: int | None) -> list[str]:
        assert self.isolation is not None
        if plan.backend == "bwrap":
            assert plan.executable is not None
            return bwrap_argv(plan.executable, self.isolation, Path(self.cwd), self.argv, seccomp_fd=seccomp_fd,
                              userns=plan.bwrap_userns)
        if plan.backend == "unshare":
            assert plan.executable is not None
            return unshare_argv(plan.executable, self.isolation, self.argv, map_root=plan.unshare_map_root)
        return list(self.argv)

    def _release(self, fds: Sequence[int]) -> None:
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass
        if self._cgroup is not None:
            self._cgroup.remove()
            self._cgroup = None

    # ------------------------------------------------------------ while it runs

    def _read_channel(self, fd: int) -> None:
        with os.fdopen(fd, "rb") as fh:
            for line in fh:
                self.on_message(line)

    def _read_logs(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for raw in self._proc.stdout:
            text = redact_with(raw.decode("utf-8", "replace").rstrip("\n"), self._secrets)
            with self._tail_lock:
                self._tail.append(text[:2000])

    def release(self, key: bytes | None = None) -> None:
        """Send a held child its key (``key``, else the one given at construction), then EOF:
        it starts its job now. The wall-clock limit and ``ProcessResult.wall_seconds`` count
        from here. A child that died while held gets nothing; ``wait()`` says why."""
        key = key if key is not None else self.key
        if key is None:
            raise ValueError("release(key=None) of a child constructed without a key")
        with self._hold_lock:
            if self._key_w is None:
                raise RuntimeError("release() of a child that is not held (started with held=True, not yet released)")
            fd, self._key_w = self._key_w, None
            self.key = key
            self._started = time.monotonic()
            self._released.set()
            self._clock.set()
        _send_key(fd, key)

    @property
    def pid(self) -> int | None:
        """The started child's process id (with bwrap: of bwrap, outside the job's namespaces)."""
        return None if self._proc is None else self._proc.pid

    def poll(self) -> int | None:
        """The exit status once the child has ended (it is not reaped otherwise); None while it runs."""
        assert self._proc is not None, "start() first"
        return self._proc.poll()

    def _close_key_pipe(self) -> None:
        with self._hold_lock:
            fd, self._key_w = self._key_w, None
        if fd is not None:
            os.close(fd)

    def _watchdog(self) -> None:
        assert self._proc is not None
        if self.held:  # the clock starts at the release; a child killed while held has none
            self._clock.wait()
            if not self._released.is_set():
                return
        try:
            self._proc.wait(timeout=self.limits.wall_seconds)
        except subprocess.TimeoutExpired:
            self._timed_out.set()
            self.kill()

    def _memory_watchdog(self) -> None:
        """Kill the job when its resident memory passes the limit. Without isolation it counts
        the process group; an isolated job's watchdog counts every process of the job (its
        process tree, its process group and its cgroup; bwrap puts the job in a session of its
        own) and remembers them for the final kill (``_track``).

        Where the job's cgroup enforces the memory limit the watchdog only measures: the kernel
        charges each page once, while resident memory also counts the shared libraries' pages
        (charged to whoever read them first) and pages that forked copies share, so the sum
        passes the limit before the cgroup's charge does and the watchdog would pre-empt the
        exact limit (a 400 MB job was killed at 408 MB resident on a busy machine)."""
        assert self._proc is not None
        pid = self._proc.pid
        measure = (lambda: group_rss_bytes(pid)) if self.isolation is None else self._track
        limit = None if self.limits.memory_mb is None else self.limits.memory_mb * 1024 * 1024
        if self._cgroup is not None and "memory" in self._cgroup.controllers:
            limit = None
        while self._proc.poll() is None:
            rss = measure()
            self._peak_rss = max(self._peak_rss, rss)
            if limit is not None and rss > limit:
                self._memory_exceeded.set()
                self.kill()
                return
            self._ended.wait(MEMORY_POLL_SECONDS)

    def _track(self) -> int:
        """Add the job's processes now running to ``_job``; their resident memory in bytes."""
        assert self._proc is not None
        root = self._proc.pid
        procs = scan_proc()
        in_cgroup = self._cgroup.pids() if self._cgroup is not None else set()
        children: dict[int, list[int]] = collections.defaultdict(list)
        for pid, info in procs.items():
            children[info[0]].append(pid)
        with self._job_lock:
            todo = [pid for pid, (_, pgrp, start, _) in procs.items()
                    if pid == root or pgrp == root or pid in in_cgroup or self._job.get(pid) == start]
            found: set[int] = set()
            while todo:
                pid = todo.pop()
                if pid not in found:
                    found.add(pid)
                    todo.extend(children.get(pid, ()))
            # forget the processes that ended (their pids may be reused), remember the new ones
            self._job = {pid: start for pid, start in self._job.items() if pid in procs and procs[pid][2] == start}
            for pid in found:
                self._job[pid] = procs[pid][2]
            if self._pidns is None and self._plan is not None and self._plan.backend != "none":
                own = pidns_of("self")
                for pid in sorted(found - {root}, key=lambda p: procs[p][0] != root):  # root's children first
                    ns = pidns_of(pid)
                    if ns is not None and ns != own:
                        self._pidns = ns
                        break
        return sum(procs[pid][3] for pid in found) * PAGE_BYTES

    def _quota_watchdog(self) -> None:
        assert self._proc is not None and self._plan is not None and self._plan.scratch_quota_mb is not None
        limit = self._plan.scratch_quota_mb * 1024 * 1024
        while self._proc.poll() is None:
            if scratch_bytes(Path(self.cwd)) > limit:
                self._disk_exceeded.set()
                self.kill()
                return
            self._ended.wait(QUOTA_POLL_SECONDS)

    # ------------------------------------------------------------ the end

    def kill(self) -> None:
        """Kill the whole job: its process group and, isolated, its cgroup and every process it
        was seen to start."""
        if self._proc is None:
            return
        self._clock.set()  # a held child's wall clock never starts now
        try:
            os.killpg(self._proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.isolation is not None:
            if self._cgroup is not None:
                self._cgroup.kill_all(timeout=0)
            self._kill_seen()

    def _kill_seen(self) -> list[int]:
        """SIGKILL every process of the job still alive; the pids it signalled."""
        with self._job_lock:
            seen = dict(self._job)
        left = [pid for pid, start in seen.items() if start_if_alive(pid) == start]
        if self._pidns is not None:  # everything in the job's pid namespace
            left += [pid for pid in scan_proc() if pid not in seen and pidns_of(pid) == self._pidns
                     and start_if_alive(pid) is not None]
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        return left

    def _finish_off(self, timeout: float = 5.0) -> None:
        """Kill until no process of the job is left (or ``timeout``)."""
        deadline = time.monotonic() + timeout
        if self._cgroup is not None:
            self._cgroup.kill_all(timeout=timeout)
        while self._kill_seen() and time.monotonic() < deadline:
            time.sleep(0.01)

    def wait(self) -> ProcessResult:
        assert self._proc is not None, "start() first"
        returncode = self._proc.wait()
        self._ended.set()
        if self.held:
            self._close_key_pipe()  # never released: nothing is left open
            self._clock.set()
        oom = pids_limited = False
        try:
            self.kill()  # whatever the job left behind in its group goes too
            if self.isolation is None:
                for t in self._threads:
                    t.join(timeout=10)
            else:
                self._finish_off()
                # a process that escaped every layer may still hold the log pipe: do not wait for it long
                deadline = time.monotonic() + 3
                for t in self._threads:
                    t.join(timeout=max(0.0, deadline - time.monotonic()))
        finally:
            if self._cgroup is not None:
                oom, pids_limited = self._cgroup.outcome()
                self._cgroup.remove()
        plan = self._plan
        if plan is not None and plan.backend != "none" and returncode is not None and 128 < returncode <= 128 + 64:
            returncode = 128 - returncode  # bwrap (and unshare's shell) exit 128+N when the job died of signal N
        killed_by = _signal_name(-returncode) if returncode is not None and returncode < 0 else None
        with self._tail_lock:
            tail = list(self._tail)
        if plan is None:
            layers: tuple[str, ...] = ("rlimits",)
        else:
            layers = plan.layers(self._cgroup.controllers if self._cgroup is not None else ())
        return ProcessResult(returncode=returncode, timed_out=self._timed_out.is_set(), killed_by=killed_by,
                             wall_seconds=time.monotonic() - self._started, tail=tail,
                             memory_exceeded=self._memory_exceeded.is_set(),
                             peak_rss_mb=round(self._peak_rss / (1024 * 1024), 1), layers=layers,
                             disk_exceeded=self._disk_exceeded.is_set(), pids_limited=pids_limited,
                             oom_killed=oom)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _send_key(fd: int, key: bytes) -> None:
    """Write ``key`` to the pipe ``fd``, then close it (EOF)."""
    try:
        view = memoryview(key)
        while view:
            view = view[os.write(fd, view):]
    except BrokenPipeError:  # the child died before reading it; wait() reports why
        pass
    finally:
        os.close(fd)


def _pipe_holding(data: bytes) -> int:
    """The read end of a pipe that holds ``data`` and then EOF."""
    r, w = os.pipe()
    try:
        os.write(w, data)
    finally:
        os.close(w)
    return r


MEMORY_POLL_SECONDS = 0.2
QUOTA_POLL_SECONDS = 0.2


