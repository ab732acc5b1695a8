"""Start or join the Ray cluster the Ray evaluation pool runs on.

``connect(None)`` starts a private single-machine cluster for this process: bound to
127.0.0.1 (nothing listens on another address), usage statistics off, no dashboard. Ray's own
processes share this process's fate when it exits normally; two of them (the dashboard and
runtime-env agents) outlive a ``kill -9``, so a small reaper process, holding the read end of
a pipe only this process writes to, kills every process of the cluster when the pipe closes.

``connect("auto")`` or ``connect("HOST:PORT")`` joins a running cluster (``ray start --head``
on the GPU box, ``ray start --address HOST:PORT`` on each worker machine). That cluster
is not ours: closing only disconnects, and the actors this process made end with it.

Ray is an extra (``pip install 'archagent[ray]'``); without it ``connect`` says how to get it.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MARKER_ENV = "ARCHAGENT_RAY_CLUSTER"  # set on every process of a cluster this process started: the reaper's handle
INSTALL_HINT = "install the Ray extra: pip install 'archagent[ray]' (or `make install`)"
# Ray puts a node on the machine's network address unless told otherwise; this switch (meant
# for laptops, read when Ray is imported and by every process it starts) makes it use 127.0.0.1.
LOOPBACK_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"

# Runs in its own process: waits for its stdin (a pipe from the coordinator) to close, then
# ends every process of the cluster: those that carry the cluster's marker in their environment
# and their descendants (Ray starts its dashboard and runtime-env agents with an environment of
# its own, without the marker; they end themselves when re-parented to pid 1, but not under a
# child subreaper such as a systemd user session). While it waits it notes the cluster's
# processes every second (with their start times: a pid may be reused), since a raylet may
# be gone, and its agents re-parented, before the last pass. Each is stopped first (SIGSTOP: a
# stopped process starts no other and keeps its children), until two passes find no new one;
# then all are killed.
REAPER = r"""
import os, select, signal, sys, time
marker = sys.argv[1].encode()
me = os.getpid()

def table():
    out = {}
    for name in os.listdir('/proc'):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f'/proc/{name}/stat', 'rb') as f:
                stat = f.read()
            rest = stat[stat.rfind(b')') + 2:].split()
            out[int(name)] = (int(rest[1]), rest[19], rest[0])
        except (OSError, ValueError, IndexError):
            continue
    return out

def cluster(known):
    procs, found = table(), set()
    for pid, (ppid, start, state) in procs.items():
        if state in (b'Z', b'X'):
            continue
        if (pid, start) in known:
            found.add(pid)
            continue
        try:
            with open(f'/proc/{pid}/environ', 'rb') as f:
                if marker in f.read().split(b'\0'):
                    found.add(pid)
        except OSError:
            continue
    grew = True
    while grew:
        more = {pid for pid, (ppid, _, _) in procs.items() if ppid in found and pid not in found}
        found |= more
        grew = bool(more)
    return {(pid, procs[pid][1]) for pid in found}

known = set()
try:
    while True:
        if select.select([sys.stdin.buffer], [], [], 1.0)[0]:
            if not os.read(sys.stdin.fileno(), 65536):
                break
        else:
            known = cluster(known)
except BaseException:
    pass
stopped, quiet = set(), 0
for _ in range(200):
    new = {pid for pid, _ in cluster(known)} - stopped
    for pid in new:
        try:
            os.kill(pid, signal.SIGSTOP)
        except OSError:
            pass
    stopped |= new
    quiet = 0 if new else quiet + 1
    if quiet >= 2:
        break
    time.sleep(0.05)
for pid in stopped:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
"""


class RayUnavailable(RuntimeError):
    """Ray cannot be used as asked; the message says why and what to do."""


@dataclass
class Cluster:
    """This process's connection to a Ray cluster."""

    address: str  # "local" for a cluster this process started, else the address joined
    started_here: bool
    resources: dict[str, float] = field(default_factory=dict)  # the cluster's total CPU, GPU, memory (bytes)
    nodes: int = 1
    _reaper: subprocess.Popen | None = None
    _reaper_pipe: int | None = None
    _owned_init: bool = True  # False when ray was already initialised by the caller (tests, notebooks)

    def describe(self) -> str:
        cpus, gpus = self.resources.get("CPU", 0), self.resources.get("GPU", 0)
        mem = self.resources.get("memory", 0) / 2**30
        where = "a local cluster on 127.0.0.1" if self.started_here else f"the cluster at {self.address}"
        return f"{where}: {self.nodes} node(s), {cpus:g} CPUs, {gpus:g} GPUs, {mem:.1f} GiB for tasks"

    def close(self) -> None:
        import ray

        if self._owned_init and ray.is_initialized():
            ray.shutdown()
        if self._reaper_pipe is not None:  # the reaper sweeps what ray.shutdown() left (its agents)
            os.close(self._reaper_pipe)
            self._reaper_pipe = None
        if self._reaper is not None:
            try:
                self._reaper.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._reaper.kill()
            self._reaper = None


def _import_ray():
    try:
        import ray
    except ImportError:
        raise RayUnavailable(f"--pool ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


def connect(address: str | None, *, num_cpus: int | None = None, num_gpus: int | None = None) -> Cluster:
    """Join ``address`` ("auto" or HOST:PORT), or start a private loopback cluster when None.
    ``num_cpus``/``num_gpus`` size a private cluster (default: what this machine has). When Ray
    is already initialised in this process (a test, a notebook), that connection is used and
    left open at close."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    already = "ray" in sys.modules and sys.modules["ray"].is_initialized()
    if already:
        ray = sys.modules["ray"]
        return _described(Cluster(address=address or "this process's", started_here=False, _owned_init=False), ray)
    if address is None:
        return _start_local(num_cpus, num_gpus)
    if address != "auto":
        _check_reachable(address)
    if _is_loopback(address):  # a cluster on 127.0.0.1 (ray start --node-ip-address 127.0.0.1): stay on loopback
        _use_loopback()
    ray = _import_ray()
    _use_token_if_any()
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise RayUnavailable(
            f"could not join the Ray cluster at {address!r}: {str(exc).strip().splitlines()[0][:300]}. "
            "Start one with `ray start --head` (see docs/ray.md), check the address (`ray status` on the head "
            "prints it) and, for a cluster with token authentication (Ray's default), that this machine has its "
            "token (~/.ray/auth_token, or RAY_AUTH_TOKEN); or drop --ray-address to start a private cluster here") from None
    return _described(Cluster(address=address, started_here=False), ray)


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail at once on an address nothing answers at: Ray itself retries for minutes."""
    if "://" in address:
        raise RayUnavailable(f"--ray-address {address!r}: give the head's HOST:PORT (as `ray start --head` prints it) "
                             "or auto; Ray Client addresses (ray://) are not supported")
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit():
        raise RayUnavailable(f"--ray-address {address!r} is not HOST:PORT (for example 10.0.0.5:6379) or auto")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise RayUnavailable(
            f"could not join the Ray cluster at {address!r}: nothing answers there ({exc.strerror or exc}). Start one "
            "with `ray start --head` (docs/ray.md), check the address (`ray status` on the head prints it), or drop "
            "--ray-address to start a private cluster here") from None


def _is_loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]") if address.count(":") == 1 or address.startswith("[") else address
    return host == "localhost" or host.startswith("127.") or host == "::1"


def _use_loopback() -> None:
    """Make this process's Ray, and every process it starts, use 127.0.0.1 as the node address."""
    os.environ[LOOPBACK_SWITCH] = "0"
    ray = _import_ray()
    from ray._private import ray_constants  # read once at import: a Ray imported earlier needs telling too

    ray_constants.ENABLE_RAY_CLUSTER = False
    del ray


def _use_token_if_any() -> None:
    """Ray clusters authenticate with a token by default, but a driver joining one only sends it
    when told: do so when this machine has a token (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or
    ~/.ray/auth_token) and RAY_AUTH_MODE is not set."""
    if "RAY_AUTH_MODE" in os.environ:
        return
    if not (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
            or (Path.home() / ".ray" / "auth_token").is_file()):
        return
    os.environ["RAY_AUTH_MODE"] = "token"
    try:  # a Ray already imported caches its configuration: refresh it
        from ray._raylet import Config

        Config.initialize("")
    except (ImportError, AttributeError):
        pass


def _start_local(num_cpus: int | None, num_gpus: int | None) -> Cluster:
    _use_loopback()
    ray = _import_ray()
    marker = f"{MARKER_ENV}={secrets.token_hex(8)}"
    read, write = os.pipe()
    reaper = subprocess.Popen([sys.executable, "-I", "-c", REAPER, marker], stdin=read, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
    os.close(read)
    os.set_inheritable(write, False)
    name, value = marker.split("=", 1)
    os.environ[name] = value  # inherited by every process the cluster starts
    try:
        ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, _node_ip_address="127.0.0.1",
                 include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    except Exception as exc:
        os.close(write)
        reaper.wait(timeout=10)
        raise RayUnavailable(f"could not start a local Ray cluster: {str(exc).strip()[:500]}") from None
    finally:
        os.environ.pop(name, None)  # later children of this process (sandboxed jobs, the LLM) are not the cluster's
    return _described(Cluster(address="local", started_here=True, _reaper=reaper, _reaper_pipe=write), ray)


def _described(cluster: Cluster, ray: Any) -> Cluster:
    cluster.resources = {k: float(v) for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU", "memory")}
    cluster.nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    return cluster
