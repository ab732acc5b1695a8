"""sandbox.process: a real child process with limits, a clean environment and a private channel."""

from __future__ import annotations

import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from sandbox.environment import clean_env

from sandbox.limits import Limits

from sandbox.process import CHANNEL_FD_ENV, KEY_FD_ENV, ChildProcess

CHILD = textwrap.dedent(f"""
    import os, sys
    key = b""
    fd = int(os.environ["{KEY_FD_ENV}"])
    while chunk := os.read(fd, 4096):
        key += chunk
    out = int(os.environ["{CHANNEL_FD_ENV}"])
    os.write(out, b"key " + key + b"\\n")
    os.write(out, ("env " + ",".join(sorted(os.environ)) + "\\n").encode())
    print("a log line on stdout")
    print("a log line on stderr", file=sys.stderr)
    exec(sys.argv[1])
""")


def run_child(tmp_path, code="", limits=Limits(wall_seconds=30), env=None):
    messages, lock = [], threading.Lock()

    def on_message(line: bytes) -> None:
        with lock:
            messages.append(line.decode())

    proc = ChildProcess([sys.executable, "-I", "-c", CHILD, code], cwd=tmp_path, env=env or clean_env(home=tmp_path),
                        limits=limits, key=b"s3cret", on_message=on_message)
    proc.start()
    return proc.wait(), messages


def test_channel_key_and_logs_are_separate(tmp_path):
    result, messages = run_child(tmp_path)
    assert result.returncode == 0 and not result.timed_out
    assert messages[0] == "key s3cret\n"
    assert "a log line on stdout" in result.tail and "a log line on stderr" in result.tail
    assert not any("log line" in m for m in messages)


def test_environment_is_clean(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    _, messages = run_child(tmp_path, env=clean_env(home=tmp_path))
    names = set(messages[1].split(" ", 1)[1].strip().split(","))
    assert not names & {"OPENAI_API_KEY", "HTTPS_PROXY", "AWS_SECRET_ACCESS_KEY"}
    assert {"HOME", "PATH"} <= names


def test_timeout_kills_the_whole_process_group(tmp_path):
    code = ("import subprocess, sys, time\n"
            "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
            "open('grandchild.pid', 'w').write(str(child.pid))\n"
            "time.sleep(60)\n")
    result, _ = run_child(tmp_path, code, limits=Limits(wall_seconds=2))
    assert result.timed_out and result.killed_by == "SIGKILL"
    assert result.wall_seconds < 30
    pid = int((tmp_path / "grandchild.pid").read_text())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _state(pid) not in {"gone", "Z"}:
        time.sleep(0.05)
    assert _state(pid) in {"gone", "Z"}  # killed with its group (a zombie at most, until reaped)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][:1]
    except (FileNotFoundError, ProcessLookupError):
        return "gone"


def test_memory_limit_stops_a_runaway_allocation(tmp_path):
    result, _ = run_child(tmp_path, "x = bytearray(3 * 1024**3)", limits=Limits(wall_seconds=30, memory_mb=512))
    assert result.returncode != 0
    assert "MemoryError" in result.tail_text


def test_resident_memory_watchdog_kills_the_group_without_an_address_space_limit(tmp_path):
    # a grandchild in the same process group holds the memory: the watchdog counts the whole group
    code = ("import subprocess, sys, time\n"
            "subprocess.Popen([sys.executable, '-c', 'x = b\"x\" * (700 * 1024**2); import time; time.sleep(60)'])\n"
            "time.sleep(60)")
    start = time.monotonic()
    result, _ = run_child(tmp_path, code, limits=Limits(wall_seconds=60, memory_mb=512, address_space=False))
    assert result.memory_exceeded and not result.timed_out and result.killed_by == "SIGKILL"
    assert result.peak_rss_mb > 512 and time.monotonic() - start < 30


def test_peak_memory_is_reported(tmp_path):
    result, _ = run_child(tmp_path, "x = b'x' * (100 * 1024**2); import time; time.sleep(0.6)")
    assert result.returncode == 0 and not result.memory_exceeded and result.peak_rss_mb > 100


def test_exit_code_and_tail_of_a_crash(tmp_path):
    result, _ = run_child(tmp_path, "raise SystemExit('bad things happened')")
    assert result.returncode == 1 and "bad things happened" in result.tail_text


def test_limits_reject_nonsense():
    with pytest.raises(ValueError, match="wall_seconds"):
        Limits(wall_seconds=0)
    with pytest.raises(ValueError, match="memory_mb"):
        Limits(memory_mb=10)


COORDINATOR = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from sandbox.environment import clean_env
    from sandbox.limits import Limits
    from sandbox.process import ChildProcess
    proc = ChildProcess([sys.executable, "-c", "import time; time.sleep(120)"], cwd=Path(sys.argv[1]),
                        env=clean_env(), limits=Limits(wall_seconds=120), key=b"k", on_message=lambda line: None)
    proc.start()
    print(proc._proc.pid, flush=True)
    time.sleep(120)
""")


def test_a_worker_dies_with_its_coordinator_even_on_kill_9(tmp_path):
    import os
    import signal
    import subprocess

    root = Path(__file__).resolve().parents[2]
    coordinator = subprocess.Popen([sys.executable, "-c", COORDINATOR, str(tmp_path)], stdout=subprocess.PIPE,
                                   text=True, cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
    try:
        child = int(coordinator.stdout.readline())
        os.kill(child, 0)  # the worker runs
        coordinator.send_signal(signal.SIGKILL)
        coordinator.wait(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and Path(f"/proc/{child}").exists() and \
                Path(f"/proc/{child}/stat").read_text().split()[2] != "Z":
            time.sleep(0.1)
        alive = Path(f"/proc/{child}").exists() and Path(f"/proc/{child}/stat").read_text().split()[2] != "Z"
        assert not alive, "the worker outlived its coordinator"
    finally:
        coordinator.kill()


# -- held children: started ahead of their job, released with the key ----------------------

def start_held(tmp_path, code="", limits=Limits(wall_seconds=30), isolation=None):
    messages, lock = [], threading.Lock()

    def on_message(line: bytes) -> None:
        with lock:
            messages.append(line.decode())

    proc = ChildProcess([sys.executable, "-I", "-c", CHILD, code], cwd=tmp_path, env=clean_env(home=tmp_path),
                        limits=limits, on_message=on_message, held=True, isolation=isolation)
    proc.start()
    return proc, messages


def test_a_held_child_waits_for_its_key_and_its_clock_starts_at_the_release(tmp_path):
    proc, messages = start_held(tmp_path, "open('ran', 'w').write('yes')", limits=Limits(wall_seconds=2))
    time.sleep(2.5)  # longer than its wall-clock limit: it still waits, unharmed
    assert proc.poll() is None and messages == [] and not (tmp_path / "ran").exists()
    proc.release(b"late key")
    result = proc.wait()
    assert result.returncode == 0 and not result.timed_out, result.tail_text
    assert messages[0] == "key late key\n" and (tmp_path / "ran").read_text() == "yes"
    assert result.wall_seconds < 2.5  # counted from the release, not from the spawn
    with pytest.raises(RuntimeError, match="not held"):
        proc.release(b"again")


def test_a_released_child_still_has_its_wall_clock_limit(tmp_path):
    proc, _ = start_held(tmp_path, "import time; time.sleep(60)", limits=Limits(wall_seconds=1))
    time.sleep(1.5)
    proc.release(b"k")
    result = proc.wait()
    assert result.timed_out and result.killed_by == "SIGKILL" and result.wall_seconds >= 1


def test_a_held_child_that_is_never_released_is_killed_with_nothing_left(tmp_path):
    from sandbox.isolation import Isolation
    from tests.security.processes import descendants, leftovers

    before = descendants()
    proc, messages = start_held(tmp_path, "open('ran', 'w').write('yes')", isolation=Isolation())
    time.sleep(0.5)
    assert proc.poll() is None
    proc.kill()
    result = proc.wait()
    assert result.killed_by == "SIGKILL" and not result.timed_out and messages == []
    assert not (tmp_path / "ran").exists() and not leftovers(before=before)
    assert proc._key_w is None  # the key pipe is closed too


def test_only_a_held_child_may_start_without_a_key(tmp_path):
    with pytest.raises(ValueError, match="key=None"):
        ChildProcess([sys.executable, "-c", "pass"], cwd=tmp_path, env=clean_env(), limits=Limits(),
                     on_message=lambda line: None)
