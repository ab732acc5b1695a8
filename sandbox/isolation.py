"""Isolation layers for one job, detected on this machine and applied by ``sandbox.process``.

Layers, strongest first; each is detected by trying it once (``detect_layers``), and whatever
is missing degrades to the next, with the reason and the way to get it in ``Layer.detail``:

- **bwrap** (bubblewrap): new user (where allowed), network, pid, ipc, uts and cgroup
  namespaces; every capability dropped; a root built from read-only binds of the system
  directories, a few harmless files of /etc, the Python installation and the ``readable``
  paths; the user's home and every ``hidden`` path invisible; only the scratch directory (the
  job's cwd) and a private, size-limited /tmp writable; its own /proc and a minimal /dev.
- **unshare** (util-linux), when bubblewrap is missing or fails: own network and pid
  namespaces, but NOT the file system.
- **seccomp**: a filter (``sandbox.seccomp``) that refuses every socket but AF_UNIX and
  AF_NETLINK, io_uring and foreign-architecture calls; with every backend, "none" included.
- **cgroups** (``sandbox.cgroups``): memory, pids and CPU limits, and a kill that misses no
  process of the job.
- **rlimits**, a **clean environment** and a **scratch quota** watchdog: everywhere.

Nothing here starts the job; ``sandbox.process.ChildProcess`` does, with ``check_isolation``'s plan.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import site
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sandbox import cgroups, seccomp
from sandbox.probes import probe_scratch, remove_left_probes

Backend = Literal["auto", "bwrap", "unshare", "none"]
TMP_MB = 512  # the job's private /tmp (a tmpfs: it counts as memory)
SHM_MB = 512  # the job's /dev/shm
UNSAFE_HINT = "or pass --unsafe to run candidate code without this isolation (only for code you trust)"
BWRAP_HOW = ("install bubblewrap: `apt-get install bubblewrap` (Debian/Ubuntu), `dnf install bubblewrap` (Fedora), "
             "`pacman -S bubblewrap` (Arch); unprivileged users also need user namespaces enabled "
             "(sysctl kernel.unprivileged_userns_clone=1, or an AppArmor profile for bwrap on Ubuntu 24.04)")


@dataclass(frozen=True)
class Isolation:
    """How to isolate one job beyond the process group, rlimits and clean environment."""

    network: bool = False  # False: the job gets no network (network namespace + seccomp socket filter)
    readable: tuple[Path, ...] = ()  # extra paths the job may read (e.g. the project's package source dirs)
    hidden: tuple[Path, ...] = ()  # paths that must be invisible to the job (dataset source files/dirs, the history home, ...)
    scratch_quota_mb: int | None = 2048  # total size of files under the scratch dir (cwd); watchdog kills the group beyond it
    devices: tuple[str, ...] = ()  # device nodes passed through (e.g. /dev/nvidia0, /dev/nvidiactl for CUDA)
    backend: Backend = "auto"  # auto: strongest available; others force a layer (tests, users)
    require_network_isolation: bool = False  # raise IsolationUnavailable (before starting anything) when no layer cuts the network

    def __post_init__(self) -> None:
        if self.backend not in ("auto", "bwrap", "unshare", "none"):
            raise ValueError(f"backend={self.backend!r}: one of auto, bwrap, unshare, none")
        if self.scratch_quota_mb is not None and self.scratch_quota_mb < 1:
            raise ValueError(f"scratch_quota_mb={self.scratch_quota_mb} must be positive (or None)")
        if self.network and self.require_network_isolation:
            raise ValueError("network=True contradicts require_network_isolation=True")
        # accept str paths from callers, keep Path tuples
        object.__setattr__(self, "readable", tuple(Path(p) for p in self.readable))
        object.__setattr__(self, "hidden", tuple(Path(p) for p in self.hidden))
        object.__setattr__(self, "devices", tuple(str(d) for d in self.devices))


class IsolationUnavailable(RuntimeError):
    """The isolation asked for cannot be had here; the message says what is missing and how to get it."""


@dataclass(frozen=True)
class Layer:
    name: str  # "bwrap", "unshare", "seccomp", "cgroup-memory", "cgroup-pids", "cgroup-cpu", "rlimits", "clean-env", "scratch-quota", "pid-namespace", "network-namespace"
    available: bool
    detail: str  # what it does here / why unavailable and how to get it


# ---------------------------------------------------------------- what the job may see (bwrap)

SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime", "/etc/passwd",
             "/etc/group", "/etc/nsswitch.conf", "/etc/hosts", "/etc/alternatives")
ETC_NETWORK_FILES = ("/etc/resolv.conf", "/etc/ssl", "/etc/ca-certificates", "/etc/pki", "/etc/gai.conf",
                     "/etc/host.conf", "/etc/services", "/etc/protocols")


def _abs(p: Path | str) -> Path:
    return Path(os.path.abspath(os.path.expanduser(str(p))))


def _real(p: Path | str) -> Path:
    return Path(os.path.realpath(_abs(p)))


def _inside(p: Path, root: Path) -> bool:
    """p is root or below it."""
    return p == root or root in p.parents


def _both(p: Path | str) -> list[Path]:
    """The real path, and the path as written when a symlink makes it differ."""
    a, r = _abs(p), _real(p)
    return [r] if a == r else [r, a]


def python_dirs() -> list[Path]:
    """The directories of this Python installation a job needs to start the same interpreter."""
    names = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             os.path.dirname(sys.executable), os.path.dirname(os.path.realpath(sys.executable))}
    try:
        names.update(site.getsitepackages())
    except AttributeError:  # old virtualenv's site module
        pass
    user_site = site.getusersitepackages() if hasattr(site, "getusersitepackages") else None
    if user_site and os.path.isdir(user_site):
        names.add(user_site)
    out: list[Path] = []
    for n in names:
        if n and os.path.exists(n):
            out.extend(_both(n))
    return _outermost(p for p in out if not any(_inside(p, Path(s)) for s in SYSTEM_DIRS if not os.path.islink(s)))


def _outermost(paths) -> list[Path]:
    """Sorted unique paths without those inside another one."""
    out: list[Path] = []
    for p in sorted(set(paths), key=lambda q: (len(q.parts), str(q))):
        if not any(_inside(p, q) for q in out):
            out.append(p)
    return out


def home_dirs() -> list[Path]:
    homes = [Path.home()]
    if os.environ.get("HOME"):
        homes.append(Path(os.environ["HOME"]))
    return sorted({p for h in homes for p in _both(h) if p != Path("/")})


class _Mounts:
    """bwrap mount arguments in order, remembering what is bound where."""

    def __init__(self) -> None:
        self.args: list[str] = []
        self.bound: list[Path] = []  # destinations of binds that show host content
        self.remount_ro: list[str] = []

    def bind(self, src: Path, dest: Path | None = None, *, rw: bool = False, try_: bool = True) -> None:
        opt = "--bind" if rw else "--ro-bind"
        self.args += [opt + ("-try" if try_ else ""), str(src), str(dest or src)]
        self.bound.append(dest or src)

    def mask(self, path: Path) -> None:
        """Make a host path invisible: an empty read-only tmpfs over a directory, /dev/null over anything else."""
        if os.path.isdir(path) and not os.path.islink(path):
            self.args += ["--perms", "0555", "--tmpfs", str(path)]
            self.remount_ro.append(str(path))
        else:
            self.args += ["--ro-bind", "/dev/null", str(path)]

    def related(self, p: Path, strictly_inside: Sequence[Path] | None = None) -> bool:
        if strictly_inside is not None:
            return any(p != b and _inside(p, b) for b in strictly_inside)
        return any(_inside(p, b) or _inside(b, p) for b in self.bound)


def bwrap_argv(bwrap: str, isolation: Isolation, scratch: Path, argv: Sequence[str], *,
               seccomp_fd: int | None = None, userns: bool = True) -> list[str]:
    """The bubblewrap command line that runs ``argv`` in ``scratch`` under ``isolation``."""
    scratch_binds, scratch = _both(scratch), _real(scratch)
    a = [bwrap, "--die-with-parent", "--new-session", "--unshare-all"]
    if isolation.network:
        a.append("--share-net")
    if userns:
        a += ["--unshare-user", "--disable-userns"]  # and the job cannot make a user namespace of its own
    a += ["--cap-drop", "ALL", "--hostname", "sandbox"]
    m = _Mounts()
    for d in SYSTEM_DIRS:
        if os.path.islink(d):
            a += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            m.bind(Path(d))
    for f in ETC_FILES + (ETC_NETWORK_FILES if isolation.network else ()):
        if os.path.exists(f):
            m.bind(Path(f))
    m.args += ["--proc", "/proc", "--dev", "/dev", "--size", str(SHM_MB << 20), "--tmpfs", "/dev/shm"]
    for dev in isolation.devices:
        if os.path.exists(dev):
            m.args += ["--dev-bind", dev, dev]
    if isolation.devices:  # GPU drivers read the PCI topology
        m.bind(Path("/sys"))
    m.args += ["--size", str(TMP_MB << 20), "--tmpfs", "/tmp"]
    for p in _outermost(q for r in isolation.readable for q in _both(r) if os.path.exists(q)):
        m.bind(p)
    # the home directory: invisible unless a bind above exposed it wholesale, in which case it
    # is masked and the readable paths inside it are bound again
    for home in home_dirs():
        if any(_inside(home, b) for b in m.bound):
            m.mask(home)
            for b in list(m.bound):
                if b != home and _inside(b, home):
                    m.bind(b)
    hidden = [p for h in isolation.hidden for p in _both(h) if os.path.exists(p)]
    for h in hidden:  # hidden beats readable (also a hidden folder above a readable one)
        if m.related(h):
            m.mask(h)
    pydirs = python_dirs()
    for p in pydirs:  # the interpreter beats hidden folders above it (it must start)
        m.bind(p)
    for h in hidden:
        if m.related(h, strictly_inside=pydirs):
            m.mask(h)
    for s in scratch_binds:
        m.bind(s, rw=True, try_=False)
    for h in hidden:
        if m.related(h, strictly_inside=[scratch]):
            m.mask(h)
    for path in m.remount_ro + ["/dev", "/"]:
        m.args += ["--remount-ro", path]
    a += m.args + ["--chdir", str(scratch)]
    if seccomp_fd is not None:
        a += ["--seccomp", str(seccomp_fd)]
    return a + ["--", *argv]


def unshare_argv(unshare: str, isolation: Isolation, argv: Sequence[str], *, map_root: bool) -> list[str]:
    a = [unshare, "--pid", "--fork", "--kill-child", "--mount-proc", "--ipc", "--uts"]
    if not isolation.network:
        a.append("--net")
    if map_root:
        a.append("--map-root-user")
    # The forked child is pid 1 of the new namespace, where the kernel ignores the signals a
    # process sends itself and orphans are reparented to it: a shell takes that place and the
    # job runs as its child (the command after "$@" keeps the shell from exec-ing the job).
    return a + ["--", "/bin/sh", "-c", '"$@"; exit $?', "sh", *argv]


# ---------------------------------------------------------------- detection

@dataclass(frozen=True)
class _Host:
    bwrap: str | None  # path of a bwrap that passed the probe
    bwrap_userns: bool  # the probe passed with --unshare-user --disable-userns
    bwrap_detail: str
    unshare: str | None
    unshare_map_root: bool
    unshare_detail: str
    seccomp: bool
    seccomp_detail: str
    cgroups: dict[str, cgroups.Hierarchy] = field(default_factory=dict)
    cgroup_why: dict[str, str] = field(default_factory=dict)


_PROBE_CODE = ("import os, socket\n"
               "cap = [l.split()[1] for l in open('/proc/self/status') if l.startswith('CapEff')][0]\n"
               "names = sorted(n for _, n in socket.if_nameindex())\n"
               "print(cap, ','.join(names), os.getpid())\n")


def _run_probe(argv: list[str], pass_fds: Sequence[int] = (), preexec=None) -> tuple[bool, str]:
    try:
        with probe_scratch() as tmp:
            r = subprocess.run(argv, cwd=tmp, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20,
                               pass_fds=tuple(pass_fds), preexec_fn=preexec, env={"PATH": "/usr/bin:/bin"})
    except (OSError, subprocess.SubprocessError) as e:
        return False, str(e)
    out = (r.stdout + r.stderr).strip()
    return r.returncode == 0, out


def _probe_bwrap(seccomp_ok: bool) -> tuple[str | None, bool, str]:
    path = shutil.which("bwrap") or next((p for p in ("/usr/bin/bwrap", "/usr/local/bin/bwrap") if os.access(p, os.X_OK)), None)
    if path is None:
        return None, False, f"bubblewrap is not installed: {BWRAP_HOW}"
    try:
        version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        version = "bubblewrap"
    failures = []
    remove_left_probes()
    for userns in (True, False):
        with probe_scratch() as scratch:
            fds: list[int] = []
            if seccomp_ok:
                r, w = os.pipe()
                os.write(w, seccomp.program())
                os.close(w)
                fds.append(r)
            argv = bwrap_argv(path, Isolation(), Path(scratch), [sys.executable, "-I", "-S", "-c", _PROBE_CODE],
                              seccomp_fd=fds[0] if fds else None, userns=userns)
            try:
                ok, out = _run_probe(argv, pass_fds=fds)
            finally:
                for fd in fds:
                    os.close(fd)
        fields = out.split()
        if ok and len(fields) >= 2 and fields[0] == "0000000000000000" and fields[1] == "lo":
            what = ("new user, network, pid, ipc, uts and cgroup namespaces" if userns else
                    "new network, pid, ipc, uts and cgroup namespaces (no user namespace: bwrap refused --unshare-user)")
            return path, userns, (f"{version} at {path}: {what}; all capabilities dropped; read-only system, Python "
                                  f"and readable paths; home and hidden paths invisible; only the scratch dir and "
                                  f"a private /tmp ({TMP_MB} MB) writable")
        failures.append(out[-300:] or "no output")
    return None, False, (f"{version} at {path} failed its probe ({failures[-1]}); "
                         f"unprivileged users need user namespaces: {BWRAP_HOW}")


def _probe_unshare() -> tuple[str | None, bool, str]:
    path = shutil.which("unshare") or next((p for p in ("/usr/bin/unshare", "/bin/unshare") if os.access(p, os.X_OK)), None)
    if path is None:
        return None, False, "util-linux unshare is not installed (apt-get install util-linux)"
    map_root = os.geteuid() != 0
    argv = unshare_argv(path, Isolation(), [sys.executable, "-I", "-S", "-c", _PROBE_CODE], map_root=map_root)
    ok, out = _run_probe(argv)
    fields = out.split()
    if ok and len(fields) >= 3 and fields[1] == "lo" and fields[2] == "2":
        return path, map_root, (f"{path}: own network and pid namespaces{' in a user namespace' if map_root else ''}; "
                                "does NOT isolate the file system (the job reads and writes whatever this user can: "
                                f"{BWRAP_HOW.split(':')[0]} for that)")
    how = "needs root or user namespaces (unshare --map-root-user)" if map_root else "needs util-linux >= 2.32"
    return None, False, f"{path} failed its probe ({out[-300:] or 'no output'}); {how}"


def _probe_seccomp() -> tuple[bool, str]:
    why = seccomp.supported()
    if why:
        return False, why
    install = seccomp.install_in_child()
    if install is None:
        return False, "cannot reach prctl through ctypes"
    code = ("import socket, errno\n"
            "a, b = socket.socketpair(); a.close(); b.close()\n"
            "try:\n    socket.socket(socket.AF_INET, socket.SOCK_STREAM)\nexcept OSError as e:\n"
            "    print(errno.errorcode.get(e.errno))\nelse:\n    print('open')\n")
    ok, out = _run_probe([sys.executable, "-I", "-S", "-c", code], preexec=install)
    if ok and out == "EAFNOSUPPORT":
        return True, (f"classic-BPF filter ({seccomp.machine()}): sockets other than AF_UNIX/AF_NETLINK -> "
                      "EAFNOSUPPORT; io_uring, ptrace, process_vm_*, x32 and foreign-architecture calls -> EPERM")
    return False, f"the kernel did not apply the filter ({out[-200:] or 'no output'}); needs CONFIG_SECCOMP_FILTER"


@functools.cache
def _host() -> _Host:
    linux = sys.platform.startswith("linux")
    seccomp_ok, seccomp_detail = _probe_seccomp()
    if linux:
        bwrap, userns, bwrap_detail = _probe_bwrap(seccomp_ok)
        unshare, map_root, unshare_detail = _probe_unshare()
    else:
        bwrap, userns, bwrap_detail = None, False, f"bubblewrap needs Linux (this is {sys.platform})"
        unshare, map_root, unshare_detail = None, False, f"unshare needs Linux (this is {sys.platform})"
    usable, why = cgroups.detect()
    return _Host(bwrap, userns, bwrap_detail, unshare, map_root, unshare_detail, seccomp_ok, seccomp_detail,
                 usable, why)


def detect_layers() -> list[Layer]:
    """Every layer, whether it works here and what it does or how to get it. Probes once per
    process by trying each layer for real; fast afterwards."""
    h = _host()
    layers = [
        Layer("bwrap", h.bwrap is not None, h.bwrap_detail),
        Layer("unshare", h.unshare is not None, h.unshare_detail),
        Layer("seccomp", h.seccomp, h.seccomp_detail),
    ]
    for c in cgroups.CONTROLLERS:
        hier = h.cgroups.get(c)
        what = {"memory": "memory limit = Limits.memory_mb (OOM kill reported), no swap",
                "pids": "process and thread limit = Limits.max_processes (fork refusals reported)",
                "cpu": "CPU quota = the job's threads"}[c]
        detail = (f"cgroup v{hier.version} under {hier.parent}: {what}; every process of the job killed at its end"
                  if hier else h.cgroup_why.get(c, "unavailable"))
        layers.append(Layer(f"cgroup-{c}", hier is not None, detail))
    if importlib.util.find_spec("resource") is not None:
        layers.append(Layer("rlimits", True, "RLIMIT_AS, RLIMIT_CPU, RLIMIT_FSIZE, RLIMIT_NOFILE, RLIMIT_CORE=0; "
                            "RLIMIT_NPROC only for non-root users (the kernel ignores it for root)"))
    else:
        layers.append(Layer("rlimits", False, f"no resource module on {sys.platform}"))
    layers.append(Layer("clean-env", True, "the job gets only the environment it is given (sandbox.environment.clean_env: "
                        "an allowlist); names that look like secrets or proxies are dropped even then"))
    layers.append(Layer("scratch-quota", True, "a watchdog sums the sizes of the files under the scratch dir every "
                        "0.2 s and kills the job beyond Isolation.scratch_quota_mb; RLIMIT_FSIZE caps each file"))
    ns = "bwrap" if h.bwrap else "unshare" if h.unshare else None
    how = f"needs bwrap or unshare: {h.bwrap_detail}"
    layers.append(Layer("pid-namespace", ns is not None, f"by {ns}: the job sees only its own processes in /proc"
                        if ns else how))
    layers.append(Layer("network-namespace", ns is not None, f"by {ns}: the job has only a loopback of its own"
                        if ns else how))
    return layers


# ---------------------------------------------------------------- what one job gets

@dataclass(frozen=True)
class Plan:
    """The layers one job will get (before its limits decide the cgroup controllers)."""

    backend: Literal["bwrap", "unshare", "none"]
    executable: str | None  # path of bwrap or unshare
    bwrap_userns: bool
    unshare_map_root: bool
    network_namespace: bool
    seccomp: bool
    cgroups: dict[str, cgroups.Hierarchy]
    scratch_quota_mb: int | None

    def layers(self, controllers: Sequence[str] = cgroups.CONTROLLERS) -> tuple[str, ...]:
        names: list[str] = []
        if self.backend != "none":
            names += [self.backend, "pid-namespace"] + (["network-namespace"] if self.network_namespace else [])
        if self.seccomp:
            names.append("seccomp")
        names += [f"cgroup-{c}" for c in cgroups.CONTROLLERS if c in self.cgroups and c in controllers]
        names += ["rlimits", "clean-env"]
        if self.scratch_quota_mb is not None:
            names.append("scratch-quota")
        return tuple(names)


def check_isolation(isolation: Isolation) -> Plan:
    """What ``isolation`` gets here; raises IsolationUnavailable when a forced backend is
    missing, or when the network must be cut and no layer can."""
    h = _host()
    if isolation.backend == "bwrap" and h.bwrap is None:
        raise IsolationUnavailable(f"bubblewrap was asked for and is unavailable: {h.bwrap_detail}; {UNSAFE_HINT}")
    if isolation.backend == "unshare" and h.unshare is None:
        raise IsolationUnavailable(f"unshare was asked for and is unavailable: {h.unshare_detail}; {UNSAFE_HINT}")
    if isolation.backend in ("auto", "bwrap") and h.bwrap is not None:
        backend, exe = "bwrap", h.bwrap
    elif isolation.backend in ("auto", "unshare") and h.unshare is not None:
        backend, exe = "unshare", h.unshare
    else:
        backend, exe = "none", None
    if isolation.require_network_isolation and backend == "none":
        if isolation.backend == "none":
            here = "available here" if h.bwrap or h.unshare else f"missing here; {BWRAP_HOW}"
            raise IsolationUnavailable(
                "the job's network must be cut, but backend='none' runs it without a network namespace: choose "
                f"backend='auto' (bubblewrap or unshare: {here}), {UNSAFE_HINT}")
        raise IsolationUnavailable(
            f"the job's network must be cut and no layer here can cut it. bubblewrap: {h.bwrap_detail}. "
            f"unshare: {h.unshare_detail}. Then try again, {UNSAFE_HINT}")
    return Plan(backend=backend, executable=exe, bwrap_userns=h.bwrap_userns, unshare_map_root=h.unshare_map_root,
                network_namespace=backend != "none" and not isolation.network,
                seccomp=h.seccomp and not isolation.network, cgroups=dict(h.cgroups),
                scratch_quota_mb=isolation.scratch_quota_mb)


def describe_isolation(isolation: Isolation) -> str:
    """One line saying what a job under ``isolation`` gets here (recorded with each run)."""
    try:
        plan = check_isolation(isolation)
    except IsolationUnavailable as e:
        return f"unavailable: {e}"
    net = "network allowed" if isolation.network else "no network"
    parts = []
    if plan.backend == "bwrap":
        parts.append(f"bwrap ({net}, read-only system, scratch only writable)")
    elif plan.backend == "unshare":
        parts.append(f"unshare ({net}, own pids; file system NOT isolated)")
    else:
        parts.append("no namespaces (network and file system NOT isolated)")
    if plan.seccomp:
        parts.append("seccomp")
    by_version: dict[int, list[str]] = {}
    for c in cgroups.CONTROLLERS:
        if c in plan.cgroups:
            by_version.setdefault(plan.cgroups[c].version, []).append(c)
    parts += [f"cgroup v{v} {'/'.join(cs)}" for v, cs in sorted(by_version.items())] or ["no cgroups"]
    parts.append("rlimits")
    parts.append(f"scratch quota {plan.scratch_quota_mb} MB" if plan.scratch_quota_mb is not None else "no scratch quota")
    return ", ".join(parts)
