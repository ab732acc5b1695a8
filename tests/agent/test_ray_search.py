"""`agent search --task digits --pool ray` through real Ray clusters on 127.0.0.1: a private one
the search starts itself, and one started with `ray start --head` that the search joins with
--ray-address. A Ray worker killed in the middle of a candidate costs nothing: the search
completes and every candidate appears exactly once with a final status."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="the Ray extra is not installed (pip install 'archagent[ray]')")

pytestmark = [pytest.mark.ray, pytest.mark.slow]

FINAL = {"ok", "invalid", "failed", "timeout", "stopped_early", "pruned"}


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")} | {"RAY_USAGE_STATS_ENABLED": "0"}
    return env | extra


def _search_argv(home: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "agent", "search", "--task", "digits", "--pool", "ray", "--proposer", "random",
            "--epochs", "2", "--final-seeds", "1", "--home", str(home), "--json", *extra]


def _history(home: Path, run_id: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "agent", "history", "--home", str(home), "--run", run_id, "--json"],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def _sql(home: Path, query: str) -> list[dict]:
    out = subprocess.run([sys.executable, "-m", "agent", "sql", query, "--home", str(home), "--json"],
                         capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    return [dict(zip(result["columns"], row)) for row in result["rows"]]


def _check_every_candidate_once(home: Path, summary: dict) -> list[dict]:
    assert summary["status"] == "done" and summary["evaluations"] == summary["budget"]
    history = _history(home, summary["run_id"])
    candidates = history["candidates"]
    ids = [c["candidate_id"] for c in candidates]
    assert len(ids) == len(set(ids)) == summary["budget"]
    assert all(c["status"] in FINAL for c in candidates), [(c["candidate_id"], c["status"]) for c in candidates]
    rows = _sql(home, "SELECT candidate_id, count(*) AS n FROM evaluations WHERE purpose = 'search' "
                      f"AND candidate_id LIKE '{summary['run_id']}-%' GROUP BY candidate_id")
    assert sorted(r["candidate_id"] for r in rows) == sorted(ids) and all(r["n"] == 1 for r in rows)
    return candidates


def _children(pid: int) -> list[int]:
    """Children of every thread of ``pid`` (the actor starts its jobs from Ray's worker threads)."""
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            out += [int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
    except OSError:
        pass
    return out


def _busy_actor() -> int | None:
    """A Ray actor process of the pool running a job: its sandboxed job is its child."""
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{name}/cmdline").read_bytes()
        except OSError:
            continue
        if cmd.startswith(b"ray::CandidateRunner") and _children(int(name)):
            return int(name)
    return None


def _search_with_a_killed_worker(home: Path) -> tuple[subprocess.Popen, str, str, int | None]:
    proc = subprocess.Popen(_search_argv(home, "--budget", "4", "--workers", "2"), env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed, end = None, time.monotonic() + 400
    try:
        while killed is None and proc.poll() is None and time.monotonic() < end:
            actor = _busy_actor()
            if actor is not None:
                time.sleep(1.0)  # in the middle of the candidate, not at its start
                if _children(actor):
                    os.kill(actor, signal.SIGKILL)
                    killed = actor
            time.sleep(0.2)
        out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc, out, err, killed


def test_a_search_runs_on_a_private_ray_cluster_and_survives_a_killed_worker(tmp_path):
    # A kill can land just after a job ended (its result sent, its sandbox still exiting) or on the
    # final report's retraining, on a loaded machine: then nothing of the search was lost, and the
    # scenario runs again (at most three times) until a search candidate's worker is killed.
    for attempt in range(3):
        home = tmp_path / f"home{attempt}"
        proc, out, err, killed = _search_with_a_killed_worker(home)
        assert killed is not None, f"no Ray worker was seen running a candidate:\n{err[-3000:]}"
        assert proc.returncode == 0, err[-3000:]
        summary = json.loads(out)
        candidates = _check_every_candidate_once(home, summary)
        assert summary["counts"]["ok"] == 4, candidates
        lost = _sql(home, f"SELECT payload FROM events WHERE kind = 'worker_lost' AND run_id = '{summary['run_id']}'")
        if lost:
            break
    assert len(lost) == 1
    payload = json.loads(lost[0]["payload"]) if isinstance(lost[0]["payload"], str) else lost[0]["payload"]
    assert payload["retrying"] is True and payload["node"] == "127.0.0.1" and payload["attempt"] == 1
    retried = _sql(home, "SELECT candidate_id, metrics->>'worker_losses' AS losses FROM evaluations "
                         f"WHERE purpose = 'search' AND candidate_id = '{payload['candidate_id']}'")
    assert [r["losses"] for r in retried] == ["1"]
    assert "queued again" in err and "training on Ray: a private cluster on 127.0.0.1" in err
    config = _sql(home, f"SELECT config->>'pool' AS pool, config->>'workers' AS workers FROM runs "
                        f"WHERE run_id = '{summary['run_id']}'")[0]
    assert config == {"pool": "ray", "workers": "2"}
    time.sleep(2)  # the reaper sweeps what Ray leaves behind
    assert _busy_actor() is None and not _ray_processes_of(proc.pid)


def _ray_processes_of(coordinator: int) -> list[str]:
    left = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            stat = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue
        if ("ray::" in cmd or "raylet" in cmd or "gcs_server" in cmd) and f") S {coordinator} " in stat:
            left.append(cmd)
    return left


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_search_joins_a_cluster_started_with_ray_start(tmp_path):
    port, mark = _free_port(), f"t{secrets.token_hex(6)}"
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # Ray's socket paths must stay under 107 bytes
    env = _env(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", ARCHAGENT_TEST_CLUSTER=mark)
    ray_cli = Path(sys.executable).parent / "ray"
    head = subprocess.Popen([str(ray_cli), "start", "--head", "--node-ip-address",
                             "127.0.0.1", "--port", str(port), "--num-cpus", "2", "--include-dashboard", "false",
                             "--disable-usage-stats", "--temp-dir", temp, "--block"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        home = tmp_path / "home"
        end = time.monotonic() + 120
        while time.monotonic() < end:  # the head is up once its port answers
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert head.poll() is None, head.stdout.read()[-3000:]
                time.sleep(0.5)
        out = subprocess.run(_search_argv(home, "--budget", "3", "--ray-address", f"127.0.0.1:{port}"),
                             env=_env(), capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        summary = json.loads(out.stdout)
        _check_every_candidate_once(home, summary)
        ray_config = json.loads(_sql(home, f"SELECT config->>'ray' AS r FROM runs WHERE run_id = '{summary['run_id']}'")[0]["r"])
        assert ray_config["address"] == f"127.0.0.1:{port}" and ray_config["workers"] == 2
        assert f"training on Ray: the cluster at 127.0.0.1:{port}, 1 node(s), 2 candidates at once" in out.stderr
    finally:
        _kill_marked(mark, Path(temp))
        head.wait(timeout=30)
        shutil.rmtree(temp, ignore_errors=True)


def _kill_marked(mark: str, temp: Path) -> None:
    """Stop every process of the test's cluster (`ray stop` would stop every cluster of the machine):
    those that carry the test's mark in their environment, and those with a file open in the
    cluster's temp folder (Ray starts its dashboard and runtime-env agents with an environment of
    their own: they outlived the test by hours)."""
    needle = f"ARCHAGENT_TEST_CLUSTER={mark}".encode()
    inside = str(temp.resolve()) + os.sep
    for name in filter(str.isdigit, os.listdir("/proc")):
        if int(name) == os.getpid():
            continue
        try:
            marked = needle in Path(f"/proc/{name}/environ").read_bytes().split(b"\0")
            if not marked:
                fds = Path(f"/proc/{name}/fd")
                marked = any(os.readlink(fd).startswith(inside) for fd in fds.iterdir())
            if marked:
                os.kill(int(name), signal.SIGKILL)
        except OSError:
            continue


def test_a_bad_ray_address_is_refused_with_the_fix(tmp_path):
    out = subprocess.run(_search_argv(tmp_path / "home", "--budget", "2", "--ray-address", "127.0.0.1:1"),
                         env=_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "could not join the Ray cluster at '127.0.0.1:1': nothing answers there" in out.stderr
    assert "ray start --head" in out.stderr
