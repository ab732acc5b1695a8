"""sandbox.isolation through sandbox.process: real jobs under every layer this machine has.

Each test runs ``python -I -c CODE`` children; a test whose layer is missing here skips and
says which (``detect_layers``). No process of a job may outlive ``wait()``: the helper
``leftovers`` looks for new processes that carry the job's marker in their command line.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from sandbox import cgroups, isolation, probes
from sandbox.isolation import Isolation, IsolationUnavailable, check_isolation, describe_isolation, detect_layers
from sandbox.environment import clean_env, redact
from sandbox.limits import Limits
from sandbox.process import CHANNEL_FD_ENV, KEY_FD_ENV, ChildProcess, ProcessResult

LAYERS = {layer.name: layer for layer in detect_layers()}
REPO = Path(__file__).resolve().parents[2]


def needs(*names: str):
    missing = [n for n in names if not LAYERS[n].available]
    return pytest.mark.skipif(bool(missing), reason="; ".join(f"{n} unavailable here: {LAYERS[n].detail}"
                                                                for n in missing))


def _pids() -> set[int]:
    return {int(p) for p in os.listdir("/proc") if p.isdigit()}


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][:1] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def leftovers(before: set[int], marker: str) -> list[int]:
    """New processes still running whose command line carries ``marker`` (every process of a job
    does: its argv, or its bwrap's, holds it). The marker keeps other people's processes out."""
    out = []
    for pid in _pids() - before - {os.getpid()}:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline and _running(pid):
            out.append(pid)
    return out


class Job:
    def __init__(self, tmp_path: Path, code: str, *, isolation: Isolation, limits: Limits | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.scratch = tmp_path / "scratch"
        self.scratch.mkdir(exist_ok=True)
        self.marker = uuid.uuid4().hex
        self.messages: list[bytes] = []
        self.before = _pids()
        self.proc = ChildProcess([sys.executable, "-I", "-c", code, self.marker], cwd=self.scratch,
                                 env=env or clean_env(home=self.scratch), limits=limits or Limits(wall_seconds=30),
                                 key=b"k3y", on_message=self.messages.append, isolation=isolation)

    def run(self) -> ProcessResult:
        self.proc.start()
        result = self.proc.wait()
        assert leftovers(self.before, self.marker) == [], "a process of the job outlived wait()"
        return result

    def lines(self, result: ProcessResult) -> dict[str, str]:
        """The job's "name: value" lines on stdout."""
        return dict(line.split(": ", 1) for line in result.tail if ": " in line)


BWRAP = Isolation(backend="bwrap", scratch_quota_mb=64)


def _server() -> tuple[socket.socket, int, list]:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    accepted: list = []

    def accept() -> None:
        try:
            accepted.append(server.accept())
        except OSError:
            pass

    threading.Thread(target=accept, daemon=True).start()
    return server, server.getsockname()[1], accepted


NETWORK_CODE = """
import os, socket, sys, time
port = int(os.environ["PORT"])
t = time.monotonic()
try:
    socket.create_connection(("127.0.0.1", port), timeout=5)
    print("connect: open")
except OSError as e:
    print("connect:", type(e).__name__, e.errno)
print("connect_seconds:", round(time.monotonic() - t, 3))
try:
    socket.getaddrinfo("pypi.org", 443)
    print("resolve: resolved")
except OSError as e:
    print("resolve:", type(e).__name__)
print("interfaces:", ",".join(sorted(n for _, n in socket.if_nameindex())))
listening = open("/proc/net/tcp").read().lower()
print("host_port_seen:", (":%04x" % port) in listening)
"""


def _check_no_network(tmp_path: Path, isolation: Isolation) -> dict[str, str]:
    server, port, accepted = _server()
    try:
        job = Job(tmp_path, NETWORK_CODE, isolation=isolation, env=clean_env({"PORT": str(port)}, home=tmp_path))
        result = job.run()
        time.sleep(0.3)
    finally:
        server.close()
    out = job.lines(result)
    assert result.returncode == 0, result.tail_text
    # refused at once (an error number), not left to time out; not told by the clock, which a busy machine slows
    assert out["connect"] != "open" and not out["connect"].startswith("TimeoutError"), out
    assert out["resolve"] == "gaierror"
    assert out["interfaces"] == "lo"  # a network namespace of its own
    assert out["host_port_seen"] == "False"
    assert accepted == []
    return out


# ---------------------------------------------------------------- detection and description

def test_detect_layers_names_every_layer_and_is_cached(monkeypatch):
    names = {"bwrap", "unshare", "seccomp", "cgroup-memory", "cgroup-pids", "cgroup-cpu", "rlimits", "clean-env",
             "scratch-quota", "pid-namespace", "network-namespace"}

    def probe_again(*args):
        raise AssertionError("detect_layers probed the host again")

    # cached: no probe runs a second time (a check of the clock instead would fail on a busy machine)
    for name in ("_probe_bwrap", "_probe_unshare", "_probe_seccomp"):
        monkeypatch.setattr(isolation, name, probe_again)
    monkeypatch.setattr(cgroups, "detect", probe_again)
    layers = detect_layers()
    assert layers == list(LAYERS.values())
    assert {layer.name for layer in layers} == names
    assert all(layer.detail for layer in layers)
    if not LAYERS["bwrap"].available:
        assert "apt-get install bubblewrap" in LAYERS["bwrap"].detail or "Linux" in LAYERS["bwrap"].detail


def test_describe_isolation_is_one_line():
    text = describe_isolation(Isolation(scratch_quota_mb=2048))
    assert "\n" not in text and "rlimits" in text and "scratch quota 2048 MB" in text
    if LAYERS["bwrap"].available:
        assert text.startswith("bwrap (no network, read-only system, scratch only writable)")
    assert "unavailable" in describe_isolation(Isolation(backend="none", require_network_isolation=True))


def test_require_network_isolation_without_a_namespace_raises_before_starting(tmp_path):
    job = Job(tmp_path, "print('ran')", isolation=Isolation(backend="none", require_network_isolation=True))
    with pytest.raises(IsolationUnavailable) as err:
        job.proc.start()
    assert "--unsafe" in str(err.value) and "bubblewrap" in str(err.value)
    assert job.proc._proc is None
    assert _job_cgroups() == []


# ---------------------------------------------------------------- bubblewrap

@needs("bwrap")
def test_bwrap_cuts_the_network(tmp_path):
    _check_no_network(tmp_path, BWRAP)


@needs("bwrap")
def test_bwrap_capabilities_are_dropped_and_the_channel_works(tmp_path, monkeypatch):
    code = f"""
import os
key = os.read(int(os.environ["{KEY_FD_ENV}"]), 100)
os.write(int(os.environ["{CHANNEL_FD_ENV}"]), b"key " + key + b"\\n")
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print("CapEff:", status["CapEff"].strip())
print("CapBnd:", status["CapBnd"].strip())
print("env:", ",".join(sorted(os.environ)))
print("pid:", os.getpid())
"""
    env = clean_env({"MY_SERVICE_TOKEN": "abcdefgh", "HTTPS_PROXY": "http://proxy:3128"}, home=tmp_path)
    job = Job(tmp_path, code, isolation=BWRAP, env=env)
    result = job.run()
    out = job.lines(result)
    assert result.returncode == 0, result.tail_text
    assert job.messages == [b"key k3y\n"]
    assert int(out["CapEff"], 16) == 0 and int(out["CapBnd"], 16) == 0
    assert "MY_SERVICE_TOKEN" not in out["env"] and "HTTPS_PROXY" not in out["env"] and "PATH" in out["env"]
    assert int(out["pid"]) < 10  # its own pid namespace
    assert result.layers[:3] == ("bwrap", "pid-namespace", "network-namespace")


@needs("bwrap")
def test_bwrap_writes_only_to_scratch_and_private_tmp(tmp_path):
    code = """
import os, sys
marker = sys.argv[1]
def attempt(path):
    try:
        with open(path, "w") as fh:
            fh.write("x")
        return "written"
    except OSError as e:
        return type(e).__name__
print("scratch:", attempt("in-scratch.txt"))
print("tmp:", attempt(f"/tmp/escape-{marker}"))
print("repo:", attempt(os.environ["REPO"] + f"/escape-{marker}"))
print("home:", attempt(os.environ["REAL_HOME"] + f"/escape-{marker}"))
print("root:", attempt(f"/escape-{marker}"))
print("usr:", attempt(f"/usr/escape-{marker}"))
print("dev:", attempt(f"/dev/escape-{marker}"))
print("repo_readable:", os.path.exists(os.environ["REPO"] + "/sandbox/process.py"))
"""
    env = clean_env({"REPO": str(REPO), "REAL_HOME": str(Path.home())}, home=tmp_path)
    job = Job(tmp_path, code, isolation=Isolation(backend="bwrap", readable=(REPO,)), env=env)
    result = job.run()
    out = job.lines(result)
    assert result.returncode == 0, result.tail_text
    assert out["scratch"] == "written" and (job.scratch / "in-scratch.txt").read_text() == "x"
    assert out["tmp"] == "written"  # the job's own /tmp, not the host's:
    assert not Path(f"/tmp/escape-{job.marker}").exists()
    assert out["repo"] != "written" and not (REPO / f"escape-{job.marker}").exists()
    assert out["home"] != "written" and not (Path.home() / f"escape-{job.marker}").exists()
    assert out["root"] != "written" and out["usr"] != "written" and out["dev"] != "written"
    assert out["repo_readable"] == "True"


@needs("bwrap")
def test_bwrap_hides_hidden_paths_and_the_home_but_not_python(tmp_path, monkeypatch):
    tree = tmp_path / "tree"
    (tree / "secret_dir").mkdir(parents=True)
    (tree / "secret_dir" / "secret.txt").write_text("labels")
    (tree / "secret_file.txt").write_text("labels")
    (tree / "visible.txt").write_text("fine")
    fake_home = tree / "home"  # a home inside a readable tree must still be hidden
    fake_home.mkdir()
    (fake_home / ".netrc").write_text("password")
    monkeypatch.setenv("HOME", str(fake_home))
    code = """
import os, sys
tree, real_home = os.environ["TREE"], os.environ["REAL_HOME"]
def read(path):
    try:
        return open(path).read()
    except OSError as e:
        return type(e).__name__
print("visible:", read(tree + "/visible.txt"))
print("secret_in_dir:", read(tree + "/secret_dir/secret.txt"))
print("secret_dir_listing:", os.listdir(tree + "/secret_dir"))
print("secret_file:", repr(read(tree + "/secret_file.txt")))
print("fake_home:", os.listdir(tree + "/home"))
print("real_home:", ",".join(sorted(os.listdir(real_home))) if os.path.isdir(real_home) else "absent")
print("shadow:", os.path.exists("/etc/shadow"))
print("python:", sys.prefix)
"""
    env = clean_env({"TREE": str(tree), "REAL_HOME": str(Path.home())}, home=tmp_path)
    isolation = Isolation(backend="bwrap", readable=(tree,),
                          hidden=(tree / "secret_dir", tree / "secret_file.txt", tmp_path / "does-not-exist"))
    job = Job(tmp_path, code, isolation=isolation, env=env)
    result = job.run()
    out = job.lines(result)
    assert result.returncode == 0, result.tail_text
    assert out["visible"] == "fine"
    assert out["secret_in_dir"] == "FileNotFoundError" and out["secret_dir_listing"] == "[]"
    assert out["secret_file"] in ("''", "'PermissionError'")  # /dev/null on a nodev mount
    assert out["fake_home"] == "[]"
    assert out["shadow"] == "False"
    assert out["python"] == sys.prefix
    # the real home shows at most the way down to the Python installation
    home = Path.home().resolve()
    allowed = {Path(p).resolve().relative_to(home).parts[0] for p in (sys.prefix, sys.base_prefix, sys.executable)
               if Path(p).resolve().is_relative_to(home)}
    shown = set(filter(None, out["real_home"].split(","))) if out["real_home"] != "absent" else set()
    assert shown <= allowed, f"the job sees {shown - allowed} in the home directory"


@needs("bwrap")
def test_bwrap_job_cannot_see_the_parents_environment(tmp_path, monkeypatch):
    secret = uuid.uuid4().hex
    monkeypatch.setenv("ARCHAGENT_TEST_API_KEY", secret)  # in this (trusted) process only
    code = f"""
import os
found = []
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            if b"{secret}" in open(f"/proc/{{pid}}/environ", "rb").read():
                found.append(pid)
        except OSError:
            pass
print("found:", found)
print("parent_visible:", os.path.exists("/proc/{os.getpid()}/environ") and
      b"{secret}" in (open("/proc/{os.getpid()}/environ", "rb").read() if os.access("/proc/{os.getpid()}/environ", os.R_OK) else b""))
print("processes:", len([p for p in os.listdir("/proc") if p.isdigit()]))
"""
    job = Job(tmp_path, code, isolation=BWRAP)
    result = job.run()
    out = job.lines(result)
    assert result.returncode == 0, result.tail_text
    assert out["found"] == "[]" and out["parent_visible"] == "False"
    assert int(out["processes"]) <= 3  # bwrap's init and the job


@needs("bwrap")
def test_killing_its_parent_does_not_reach_the_coordinator(tmp_path):
    code = f"""
import os, signal
parent = os.getppid()
print("parent:", parent)
if parent == {os.getpid()}:
    raise SystemExit(5)  # no pid namespace: do not shoot the test process
os.kill(parent, signal.SIGKILL)
print("survived: yes")
"""
    job = Job(tmp_path, code, isolation=BWRAP, limits=Limits(wall_seconds=10))
    result = job.run()
    assert result.returncode != 5, "the job saw the test process as its parent"
    assert not result.timed_out
    assert os.getpid() in _pids()  # and we are still here to check


# ---------------------------------------------------------------- limits and the final kill

@needs("cgroup-pids")
def test_a_fork_bomb_is_stopped_by_the_pids_limit(tmp_path):
    code = """
import os
while True:
    try:
        os.fork()
    except OSError:
        pass
"""
    job = Job(tmp_path, code, isolation=Isolation(), limits=Limits(wall_seconds=2, max_processes=32))
    start = time.monotonic()
    result = job.run()  # asserts that no process is left
    assert result.pids_limited and "cgroup-pids" in result.layers
    assert result.timed_out and time.monotonic() - start < 15
    assert _job_cgroups() == []


@needs("cgroup-memory")
def test_a_memory_bomb_is_oom_killed_by_the_cgroup(tmp_path):
    job = Job(tmp_path, "x = b'x' * (3 * 1024**3)", isolation=Isolation(),
              limits=Limits(wall_seconds=30, memory_mb=400, address_space=False))
    result = job.run()
    assert result.oom_killed and result.killed_by == "SIGKILL" and not result.timed_out


def test_a_memory_bomb_meets_the_address_space_limit_when_isolated(tmp_path):
    job = Job(tmp_path, "x = bytearray(3 * 1024**3)", isolation=Isolation(), limits=Limits(wall_seconds=30, memory_mb=400))
    result = job.run()
    assert result.returncode != 0 and "MemoryError" in result.tail_text


def test_a_disk_filler_is_killed_by_the_scratch_quota(tmp_path):
    code = """
with open("filler", "wb") as fh:
    while True:
        fh.write(b"x" * 1024**2)
        fh.flush()
"""
    job = Job(tmp_path, code, isolation=Isolation(scratch_quota_mb=20), limits=Limits(wall_seconds=30))
    start = time.monotonic()
    result = job.run()
    assert result.disk_exceeded and result.killed_by == "SIGKILL" and "scratch-quota" in result.layers
    assert time.monotonic() - start < 10


DAEMON = """
import os, signal, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        open("daemon.pid", "w").write(str(os.getpid()))
        time.sleep(60)
    os._exit(0)
time.sleep(0.5)
"""


def _daemon_backends() -> list:
    marks = {"bwrap": needs("bwrap"), "unshare": needs("unshare"), "none": needs("cgroup-pids")}
    return [pytest.param(b, marks=m) for b, m in marks.items()]


@pytest.mark.parametrize("backend", _daemon_backends())
def test_a_setsid_daemon_is_gone_after_wait(tmp_path, backend):
    job = Job(tmp_path, DAEMON, isolation=Isolation(backend=backend))
    result = job.run()  # asserts that no process is left
    assert result.returncode == 0, result.tail_text
    assert (job.scratch / "daemon.pid").exists()  # there was a daemon to kill


@needs("bwrap")
def test_a_timeout_kills_a_job_that_ignores_sigterm(tmp_path):
    code = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(60)"
    job = Job(tmp_path, code, isolation=BWRAP, limits=Limits(wall_seconds=1))
    result = job.run()
    assert result.timed_out and result.killed_by == "SIGKILL" and result.wall_seconds < 10


def _job_cgroups() -> list[Path]:
    usable, _ = cgroups.detect()
    parents = {h.parent for h in usable.values()}
    prefix = f"{cgroups.PREFIX}{os.getpid()}-"
    return [p for parent in parents for p in parent.iterdir() if p.name.startswith(prefix)]


@needs("cgroup-memory")
def test_no_cgroup_directory_remains_after_jobs(tmp_path):
    for code in ("print('fine')", "raise SystemExit(3)"):
        Job(tmp_path, code, isolation=Isolation()).run()
    assert _job_cgroups() == []


# ---------------------------------------------------------------- seccomp and unshare

SOCKETS_CODE = """
import errno, os, socket
for name in ("AF_INET", "AF_INET6", "AF_PACKET"):
    try:
        socket.socket(getattr(socket, name), socket.SOCK_DGRAM).close()
        print(name + ":", "open")
    except OSError as e:
        print(name + ":", errno.errorcode.get(e.errno))
a, b = socket.socketpair()
a.sendall(b"ping")
print("socketpair:", b.recv(4).decode())
server = socket.socket(socket.AF_UNIX)
server.bind("unix.sock")
server.listen()
client = socket.socket(socket.AF_UNIX)
client.connect("unix.sock")
conn, _ = server.accept()
client.sendall(b"pong")
print("unix:", conn.recv(4).decode())
"""


@needs("seccomp")
def test_seccomp_alone_blocks_inet_sockets_but_not_unix_ones(tmp_path):
    job = Job(tmp_path, SOCKETS_CODE, isolation=Isolation(backend="none"))
    result = job.run()
    out = job.lines(result)
    assert result.returncode == 0, result.tail_text
    assert out["AF_INET"] == out["AF_INET6"] == out["AF_PACKET"] == errno.errorcode[errno.EAFNOSUPPORT]
    assert out["socketpair"] == "ping" and out["unix"] == "pong"
    assert "seccomp" in result.layers and "bwrap" not in result.layers and "network-namespace" not in result.layers


@needs("unshare")
def test_unshare_cuts_the_network(tmp_path):
    _check_no_network(tmp_path, Isolation(backend="unshare"))
    assert check_isolation(Isolation(backend="unshare")).backend == "unshare"
    assert "NOT" in LAYERS["unshare"].detail  # says the file system is not isolated


@needs("unshare")
def test_unshare_reports_a_signal_death(tmp_path):
    job = Job(tmp_path, "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", isolation=Isolation(backend="unshare"))
    result = job.run()
    assert result.killed_by == "SIGKILL" and result.returncode == -9


# ---------------------------------------------------------------- secrets in logs

def test_redact_hides_secret_values_in_kept_lines(tmp_path, monkeypatch):
    secret = "sk-" + uuid.uuid4().hex
    monkeypatch.setenv("MY_API_TOKEN", secret)
    monkeypatch.setenv("SHORT_KEY", "abc")  # too short to redact
    assert redact(f"key={secret} abc") == "key=[redacted] abc"
    job = Job(tmp_path, "import sys\nprint('leaked', sys.argv[2])", isolation=Isolation())
    job.proc.argv.append(secret)  # the job got hold of it somehow
    result = job.run()
    assert secret not in result.tail_text and "leaked [redacted]" in result.tail_text


def test_probe_folders_of_killed_probers_are_removed(tmp_path, monkeypatch):
    """A probe folder nobody holds locked (its prober was killed) is removed by the next prober;
    one in use, or just made, is not."""
    monkeypatch.setattr(probes.tempfile, "gettempdir", lambda: str(tmp_path))
    left = tmp_path / f"{probes.PROBE_PREFIX}abc123"
    fresh = tmp_path / f"{probes.PROBE_PREFIX}def456"
    left.mkdir()
    fresh.mkdir()
    old = time.time() - 60
    os.utime(left, (old, old))
    with probes.probe_scratch() as busy:
        os.utime(busy, (old, old))
        probes.remove_left_probes()
        assert Path(busy).is_dir()
    assert not left.exists() and fresh.exists() and not Path(busy).exists()


@needs("cgroup-pids")
def test_a_job_cgroup_left_by_a_killed_coordinator_is_removed_when_another_job_ends():
    import subprocess

    usable, _ = cgroups.detect()
    parent = usable["pids"].parent
    dead = subprocess.Popen(["true"])
    dead.wait()
    left = parent / f"{cgroups.PREFIX}{dead.pid}-1-123456"
    left.mkdir()
    try:
        old = time.time() - 2 * cgroups.STALE_AGE
        os.utime(left, (old, old))
        job = cgroups.JobCgroup(usable, memory_mb=None, max_processes=64, cpus=None)
        assert job.remove()
        assert not left.exists()
    finally:
        if left.exists():
            left.rmdir()
