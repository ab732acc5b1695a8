"""Control groups for one job: memory, process count and CPU, and a kill that misses nothing.

Each job gets a fresh cgroup, created as a child of the trusted process's OWN cgroup in each
hierarchy (``/proc/self/cgroup``), never at a place chosen by path alone:

- cgroup v2 when our own v2 cgroup has the controllers delegated to it (``memory.max``,
  ``memory.swap.max`` = 0, ``pids.max``, ``cpu.max``; ``cgroup.kill`` ends everything);
- otherwise cgroup v1, one hierarchy per controller (``memory.limit_in_bytes`` and
  ``memory.memsw.limit_in_bytes`` when swap accounting exists, ``pids.max``,
  ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``).

The child joins between fork and exec by writing "0" to ``cgroup.procs`` through descriptors
opened here, in the parent; whatever it starts afterwards, daemons included, stays inside.
After the job, ``kill_all`` stops new forks (pids.max = 0), kills every process left until the
group is empty, ``outcome`` reads whether the memory limit OOM-killed something or the pids
limit refused a fork, and ``remove`` deletes the directories (also on every error path).
"""

from __future__ import annotations

import errno
import functools
import itertools
import os
import signal
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

CONTROLLERS = ("memory", "pids", "cpu")
PREFIX = "archagent-"
CPU_PERIOD_US = 100_000
_counter = itertools.count()
_counter_lock = threading.Lock()


@dataclass(frozen=True)
class Hierarchy:
    version: int  # 1 or 2
    parent: Path  # our own cgroup in this hierarchy; job cgroups are made inside it
    controllers: tuple[str, ...]  # the controllers of CONTROLLERS this hierarchy gives a job


def _read(path: Path | str) -> str:
    with open(path) as fh:
        return fh.read()


def _write(path: Path | str, value: str) -> None:
    with open(path, "w") as fh:
        fh.write(value)


def _mounts() -> list[tuple[str, str, str, set[str]]]:
    """(mount point, root inside the hierarchy, file-system type, super options) per cgroup mount."""
    out = []
    try:
        lines = _read("/proc/self/mountinfo").splitlines()
    except OSError:
        return out
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, rfields = left.split(), right.split()
        if len(fields) < 5 or len(rfields) < 3 or rfields[0] not in ("cgroup", "cgroup2"):
            continue
        point = fields[4].replace("\\040", " ")
        out.append((point, fields[3], rfields[0], set(rfields[2].split(","))))
    return out


def _own_cgroups() -> dict[str, str]:
    """Hierarchy key -> our path in it: "" for v2, else the comma-joined controller list."""
    out = {}
    try:
        lines = _read("/proc/self/cgroup").splitlines()
    except OSError:
        return out
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) == 3:
            out[parts[1]] = parts[2]
    return out


def _join(mount: str, root: str, path: str) -> Path | None:
    """Our cgroup's directory under a mount whose root is ``root`` inside the hierarchy."""
    if root != "/" and not (path == root or path.startswith(root.rstrip("/") + "/")):
        return None  # our cgroup is not below what this mount shows
    rel = path[len(root):] if root != "/" else path
    return Path(mount) / rel.lstrip("/")


def _probe_dir(parent: Path, files: Mapping[str, str]) -> str | None:
    """Make a child cgroup, write ``files`` into it, remove it; None when all of it worked."""
    probe = parent / f"{PREFIX}probe-{os.getpid()}-{time.monotonic_ns()}"
    try:
        probe.mkdir()
    except OSError as e:
        return f"cannot create a cgroup in {parent}: {e.strerror}"
    try:
        for name, value in files.items():
            try:
                _write(probe / name, value)
            except OSError as e:
                return f"cannot write {name} in {parent}: {e.strerror}"
        return None
    finally:
        _rmdir(probe)


def _rmdir(path: Path, timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            path.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError as e:
            if e.errno != errno.EBUSY or time.monotonic() > deadline:
                return False
            time.sleep(0.01)


STALE_AGE = 10.0  # seconds an empty cgroup of a coordinator that is gone waits before it is removed


def _remove_stale(parent: Path) -> None:
    """Remove empty job cgroups whose coordinator died before it could remove them (its pid, in
    the name, is gone). The wait (STALE_AGE) is for a coordinator in another pid namespace,
    whose empty cgroup lives only for the moment between making it and moving its job in."""
    try:
        entries = list(parent.iterdir())
    except OSError:
        return
    for entry in entries:
        name = entry.name
        if not name.startswith(PREFIX) or name.startswith(PREFIX + "probe-"):
            continue
        try:
            pid = int(name[len(PREFIX):].split("-", 1)[0])
        except ValueError:
            continue
        if pid == os.getpid() or Path(f"/proc/{pid}").exists():
            continue
        try:
            if time.time() - entry.stat().st_mtime > STALE_AGE and not _read(entry / "cgroup.procs").strip():
                entry.rmdir()
        except OSError:
            pass


def _v2_enable(parent: Path, wanted: list[str]) -> str | None:
    """Make sure ``wanted`` are enabled for children of ``parent``; None on success."""
    try:
        enabled = set(_read(parent / "cgroup.subtree_control").split())
    except OSError as e:
        return f"cannot read {parent}/cgroup.subtree_control: {e.strerror}"
    missing = [c for c in wanted if c not in enabled]
    if not missing:
        return None
    try:
        _write(parent / "cgroup.subtree_control", " ".join("+" + c for c in missing))
        return None
    except OSError as e:
        if e.errno != errno.EBUSY:
            return f"cannot enable {', '.join(missing)} in {parent}/cgroup.subtree_control: {e.strerror}"
    # "no internal processes": a cgroup that hands controllers to children may hold no process
    # itself. When we are alone in our cgroup (e.g. started by `systemd-run --user --scope -p
    # Delegate=yes`), move ourselves into a leaf and try again.
    try:
        procs = _read(parent / "cgroup.procs").split()
    except OSError as e:
        return f"cannot read {parent}/cgroup.procs: {e.strerror}"
    if procs != [str(os.getpid())]:
        return (f"{parent} holds other processes, so its controllers cannot be handed to job cgroups; "
                "start the agent alone in a delegated cgroup, e.g. `systemd-run --user --scope -p Delegate=yes agent ...`")
    leaf = parent / f"{PREFIX}coordinator"
    try:
        leaf.mkdir(exist_ok=True)
        _write(leaf / "cgroup.procs", "0")
        _write(parent / "cgroup.subtree_control", " ".join("+" + c for c in missing))
        return None
    except OSError as e:
        return f"cannot hand {', '.join(missing)} to job cgroups in {parent}: {e.strerror}"


def _probe_files(version: int, controller: str) -> dict[str, str]:
    if version == 2:
        return {"memory": {"memory.max": str(256 << 20)}, "pids": {"pids.max": "64"},
                "cpu": {"cpu.max": f"{CPU_PERIOD_US} {CPU_PERIOD_US}"}}[controller]
    return {"memory": {"memory.limit_in_bytes": str(256 << 20)}, "pids": {"pids.max": "64"},
            "cpu": {"cpu.cfs_period_us": str(CPU_PERIOD_US), "cpu.cfs_quota_us": str(CPU_PERIOD_US)}}[controller]


@functools.cache
def detect() -> tuple[dict[str, Hierarchy], dict[str, str]]:
    """Controller -> the hierarchy that gives it to jobs, and controller -> why it is unavailable.
    Probes by creating (and removing) a cgroup and writing its limit; cached per process."""
    import sys

    usable: dict[str, Hierarchy] = {}
    why: dict[str, str] = {}
    if not sys.platform.startswith("linux"):
        return usable, {c: f"cgroups are Linux-only (this is {sys.platform})" for c in CONTROLLERS}
    mounts, own = _mounts(), _own_cgroups()

    # cgroup v2: our own cgroup, with the controllers delegated to it
    v2_path = own.get("")
    v2_dir = None
    if v2_path is not None:
        for point, root, fstype, _ in mounts:
            if fstype == "cgroup2":
                v2_dir = _join(point, root, v2_path)
                if v2_dir is not None:
                    break
    if v2_dir is not None:
        try:
            available = set(_read(v2_dir / "cgroup.controllers").split())
        except OSError:
            available = set()
        wanted = [c for c in CONTROLLERS if c in available]
        for c in CONTROLLERS:
            if c not in available:
                why[c] = f"cgroup v2 ({v2_dir}) does not delegate the {c} controller to us"
        problem = _v2_enable(v2_dir, wanted) if wanted else None
        if problem:
            for c in wanted:
                why[c] = problem
        else:
            for c in wanted:
                problem = _probe_dir(v2_dir, _probe_files(2, c))
                if problem:
                    why[c] = problem
            good = tuple(c for c in wanted if c not in why)
            if good:
                _remove_stale(v2_dir)
                for c in good:
                    usable[c] = Hierarchy(2, v2_dir, good)

    # cgroup v1: one hierarchy per controller, our own cgroup in each
    for c in CONTROLLERS:
        if c in usable:
            continue
        for point, root, fstype, options in mounts:
            if fstype != "cgroup" or c not in options:
                continue
            key = next((k for k in own if k and c in k.split(",")), None)
            parent = _join(point, root, own[key]) if key else None
            if parent is None:
                continue
            problem = _probe_dir(parent, _probe_files(1, c))
            if problem:
                why.setdefault(c, problem)
                continue
            why.pop(c, None)
            _remove_stale(parent)
            usable[c] = Hierarchy(1, parent, (c,))
            break
        else:
            why.setdefault(c, f"no writable cgroup hierarchy has the {c} controller")
    # controllers sharing one v1 hierarchy (e.g. cpu,cpuacct with pids) share one directory
    merged: dict[Path, list[str]] = {}
    for c, h in usable.items():
        merged.setdefault(h.parent, []).append(c)
    usable = {c: Hierarchy(h.version, h.parent, tuple(merged[h.parent])) for c, h in usable.items()}
    return usable, {c: w for c, w in why.items() if c not in usable}


class JobCgroup:
    """The cgroups of one job. Create in the parent, ``join`` between fork and exec (the
    descriptors are open already), ``kill_all`` + ``outcome`` + ``remove`` after the job."""

    def __init__(self, hierarchies: Mapping[str, Hierarchy], *, memory_mb: int | None, max_processes: int | None,
                 cpus: float | None) -> None:
        wanted = {"memory": memory_mb is not None, "pids": max_processes is not None, "cpu": cpus is not None}
        self.controllers = tuple(c for c in CONTROLLERS if wanted[c] and c in hierarchies)
        with _counter_lock:
            n = next(_counter)
        self.name = f"{PREFIX}{os.getpid()}-{n}-{time.monotonic_ns() % 10**9}"
        self.dirs: dict[Path, tuple[int, list[str]]] = {}  # our job cgroup -> (version, controllers)
        for c in self.controllers:
            h = hierarchies[c]
            d = h.parent / self.name
            self.dirs.setdefault(d, (h.version, []))[1].append(c)
        self._fds: list[int] = []
        self._stopped: tuple[bool, bool] | None = None  # outcome() when kill_all first stopped forks
        try:
            for d, (version, controllers) in self.dirs.items():
                d.mkdir()
                for c in controllers:
                    self._limit(d, version, c, memory_mb, max_processes, cpus)
                self._fds.append(os.open(d / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC))
        except BaseException:
            self.remove()
            raise

    @staticmethod
    def _limit(d: Path, version: int, controller: str, memory_mb: int | None, max_processes: int | None,
               cpus: float | None) -> None:
        if controller == "memory" and memory_mb is not None:
            limit = str(memory_mb * 1024 * 1024)
            if version == 2:
                _write(d / "memory.max", limit)
                if (d / "memory.swap.max").exists():
                    _write(d / "memory.swap.max", "0")
            else:
                _write(d / "memory.limit_in_bytes", limit)
                if (d / "memory.memsw.limit_in_bytes").exists():  # swap accounting: no swap beyond the limit
                    try:
                        _write(d / "memory.memsw.limit_in_bytes", limit)
                    except OSError:
                        pass
        elif controller == "pids" and max_processes is not None:
            _write(d / "pids.max", str(max_processes))
        elif controller == "cpu" and cpus is not None:
            quota = max(1000, int(cpus * CPU_PERIOD_US))
            if version == 2:
                _write(d / "cpu.max", f"{quota} {CPU_PERIOD_US}")
            else:
                _write(d / "cpu.cfs_period_us", str(CPU_PERIOD_US))
                _write(d / "cpu.cfs_quota_us", str(quota))

    def version(self) -> int:
        return next(iter(self.dirs.values()))[0] if self.dirs else 0

    @property
    def fds(self) -> tuple[int, ...]:
        return tuple(self._fds)

    def join(self) -> None:
        """Between fork and exec: move the calling process into every job cgroup."""
        for fd in self._fds:
            os.write(fd, b"0")

    def close_fds(self) -> None:
        for fd in self._fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds = []

    def pids(self) -> set[int]:
        out: set[int] = set()
        for d in self.dirs:
            try:
                out.update(int(p) for p in _read(d / "cgroup.procs").split())
            except (OSError, ValueError):
                pass
        return out

    def kill_all(self, timeout: float = 5.0) -> bool:
        """Kill every process in the job's cgroups until none is left (or ``timeout``); True
        when empty. The first call stops new forks (pids.max = 0) after noting whether the
        job's own forks had hit the limit."""
        if self._stopped is None:
            self._stopped = self.outcome()
            for d, (version, controllers) in self.dirs.items():
                if "pids" in controllers:
                    try:
                        _write(d / "pids.max", "0")  # no more forks while we kill
                    except OSError:
                        pass
        for d, (version, _) in self.dirs.items():
            if version == 2 and (d / "cgroup.kill").exists():
                try:
                    _write(d / "cgroup.kill", "1")
                except OSError:
                    pass
        deadline = time.monotonic() + timeout
        while True:
            left = {p for p in self.pids() if _alive(p)}
            if not left:
                return True
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)

    def outcome(self) -> tuple[bool, bool]:
        """(the memory limit OOM-killed something, the pids limit refused one of the job's forks)."""
        oom = pids = False
        for d, (version, controllers) in self.dirs.items():
            if "memory" in controllers:
                name = "memory.events" if version == 2 else "memory.oom_control"
                oom = oom or _counter_of(d / name, "oom_kill") > 0
            if "pids" in controllers:
                pids = pids or _counter_of(d / "pids.events", "max") > 0
        if self._stopped is not None:  # forks refused after kill_all stopped them do not count
            pids = self._stopped[1]
        return oom, pids

    def remove(self) -> bool:
        """Remove the job's cgroups, and the stale ones a killed coordinator left beside them."""
        self.close_fds()
        ok = True
        for d in self.dirs:
            ok = _rmdir(d) and ok
            _remove_stale(d.parent)
        return ok


def _counter_of(path: Path, key: str) -> int:
    try:
        for line in _read(path).splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        stat = _read(f"/proc/{pid}/stat")
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:][:1] not in ("Z", "X")
