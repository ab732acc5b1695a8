"""The Ray pool on a real local Ray cluster bound to 127.0.0.1: jobs run in the same sandbox as
locally, checkpoints and weights come back to the coordinator, and a worker killed in the
middle of a job gets the job re-queued (or failed once its retries are spent), never lost
and never finished twice."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="the Ray extra is not installed (pip install 'archagent[ray]')")

from evaluator.pools.base import Job  # noqa: E402
from evaluator.pools.ray_cluster import connect  # noqa: E402
from evaluator.pools.ray import RayPool, Resources  # noqa: E402
from evaluator.records import Purpose, Status  # noqa: E402
from evaluator.spaces import get_space  # noqa: E402
from sandbox.isolation import Isolation  # noqa: E402
from sandbox.limits import Limits  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow]

SLOW_START = "import time; time.sleep(4)"  # gives a test time to kill the worker in the middle of the job


@pytest.fixture(scope="module")
def cluster():
    cluster = connect(None, num_cpus=2)
    yield cluster
    cluster.close()


@pytest.fixture(scope="module")
def specs(digits):
    space = get_space("layers", input_shape=digits.input_shape, num_classes=digits.num_classes)
    rng = random.Random(0)
    return [space.sample(rng) for _ in range(4)]


def make_pool(cluster, digits, tmp_path, **kwargs) -> RayPool:
    options = {"workdir": tmp_path / "work", "epochs": 2, "limits": Limits(wall_seconds=300),
               "isolation": Isolation(), "run_id": "t"} | kwargs
    return RayPool(digits, "layers", cluster=cluster, **options)


def drain(pool: RayPool, until_finished: int, timeout: float = 600) -> list:
    events, end = [], time.monotonic() + timeout
    while sum(e.kind == "finished" for e in events) < until_finished:
        assert time.monotonic() < end, f"no result within {timeout} s: {[(e.kind, e.candidate_id) for e in events]}"
        events += pool.events(timeout=5)
    return events


def test_the_cluster_listens_on_loopback_only(cluster):
    assert cluster.started_here and cluster.resources["CPU"] == 2
    assert all(n["NodeManagerAddress"] == "127.0.0.1" for n in ray.nodes())
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state = fields[1], fields[3]
            if state == "0A":  # LISTEN
                ports.add(local)
    # every listening socket of this machine's Ray processes is on 127.0.0.1 (IPv4 or IPv4-mapped)
    ray_inodes = _socket_inodes_of_ray_processes()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in ray_inodes:
                address = fields[1].split(":")[0]
                assert address in ("0100007F", "0000000000000000FFFF00000100007F"), f"Ray listens on {fields[1]}"


def _socket_inodes_of_ray_processes() -> set[str]:
    inodes = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"ray" not in cmd:
                continue
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    return inodes


def test_jobs_run_sandboxed_on_actors_and_final_weights_come_back(cluster, digits, specs, tmp_path):
    pool = make_pool(cluster, digits, tmp_path, workers=2)
    try:
        assert pool.capacity == 2 and len(pool.nodes) == 2 and {n["ip"] for n in pool.nodes} == {"127.0.0.1"}
        pool.submit(Job(candidate_id="t-c0001", spec=specs[0]))
        pool.submit(Job(candidate_id="t-c0002", spec=specs[1], purpose=Purpose.FINAL))
        assert pool.in_flight == 2 and pool.free_slots() == 0
        events = drain(pool, 2)
    finally:
        pool.close()
    finished = {e.candidate_id: e.evaluation for e in events if e.kind == "finished"}
    assert [e.kind for e in events].count("finished") == 2
    search, final = finished["t-c0001"], finished["t-c0002"]
    for ev in (search, final):
        assert ev.status is Status.OK, ev.error
        assert [p.epoch for p in ev.curve] == [1, 2] and ev.metrics["node"] == "127.0.0.1"
        assert "bwrap" in ev.metrics["sandbox"] and "seccomp" in ev.metrics["sandbox"]
    assert search.test_accuracy is None and 0 <= final.test_accuracy <= 1
    kept = Path(final.metrics["weights"])  # written by the coordinator, not left on the node
    assert kept == tmp_path / "work" / "weights" / "t-c0002-seed0.pt" and kept.stat().st_size > 0
    assert kept.with_suffix(".json").is_file()
    assert all(e.data.get("node") == "127.0.0.1" for e in events if e.kind in ("started", "progress"))
    assert not (Path("/tmp/archagent-ray") / pool._config["run"]).exists()  # the node's staged data are removed


def test_a_checkpoint_travels_through_the_coordinator_to_the_next_rung(cluster, digits, specs, tmp_path):
    pool = make_pool(cluster, digits, tmp_path, workers=2)
    try:
        pool.submit(Job(candidate_id="t-c0003", spec=specs[2], fidelity=1, checkpoint=True))
        first = [e for e in drain(pool, 1) if e.kind == "finished"][0].evaluation
        assert first.status is Status.OK and [p.epoch for p in first.curve] == [1]
        assert (tmp_path / "work" / "checkpoints" / "t-c0003.pt").is_file()
        with pytest.raises(ValueError, match="cannot resume t-c0009"):
            pool.submit(Job(candidate_id="t-c0009", spec=specs[2], fidelity=2, resume=True))
        pool.submit(Job(candidate_id="t-c0003", spec=specs[2], fidelity=2, resume=True))
        events = drain(pool, 1)
    finally:
        pool.close()
    second = [e for e in events if e.kind == "finished"][0].evaluation
    assert second.status is Status.OK, second.error
    assert [p.epoch for p in second.curve] == [1, 2] and second.curve[0] == first.curve[0]
    assert second.metrics["jobs"] == 2 and second.metrics["resumed_from_epoch"] == 1
    started = [e for e in events if e.kind == "started"][0]
    assert started.data["from_epoch"] == 1


def _kill_the_worker_running(pool: RayPool, candidate_id: str, events: list) -> int:
    """Wait until the candidate's job started on an actor, then SIGKILL that actor's process."""
    end = time.monotonic() + 300
    while not any(e.kind == "started" and e.candidate_id == candidate_id for e in events):
        assert time.monotonic() < end, "the job never started"
        events += pool.events(timeout=2)
    [actor] = pool.running_on(candidate_id)
    os.kill(actor["pid"], signal.SIGKILL)
    return actor["pid"]


def test_a_worker_killed_mid_job_gets_its_job_requeued_and_finished_once(cluster, digits, specs, tmp_path):
    pool = make_pool(cluster, digits, tmp_path, workers=1, retries=2,
                     pool_options={"test_inject": {"c0004": SLOW_START}})
    try:
        pool.submit(Job(candidate_id="t-c0004", spec=specs[3]))
        events: list = []
        killed = _kill_the_worker_running(pool, "t-c0004", events)
        events += drain(pool, 1)
        assert pool.lost == 1 and pool.in_flight == 0
        assert all(n["pid"] != killed for n in pool.nodes)  # replaced by a new actor
    finally:
        pool.close()
    lost = [e for e in events if e.kind == "lost"]
    assert len(lost) == 1 and lost[0].data["retrying"] and lost[0].data["attempt"] == 1
    assert "127.0.0.1" in lost[0].data["error"]
    finished = [e for e in events if e.kind == "finished"]
    assert len(finished) == 1  # exactly once
    ev = finished[0].evaluation
    assert ev.status is Status.OK, ev.error
    assert [p.epoch for p in ev.curve] == [1, 2] and ev.metrics["worker_losses"] == 1
    assert "lost" in ev.metrics["worker_lost"]
    started = [e for e in events if e.kind == "started"]
    assert len(started) == 2  # the first attempt, then the retry


def test_a_job_that_loses_its_worker_beyond_the_retries_fails_naming_each_loss(cluster, digits, specs, tmp_path):
    pool = make_pool(cluster, digits, tmp_path, workers=1, retries=0,
                     pool_options={"test_inject": {"c0005": SLOW_START}})
    try:
        pool.submit(Job(candidate_id="t-c0005", spec=specs[0]))
        events: list = []
        _kill_the_worker_running(pool, "t-c0005", events)
        events += drain(pool, 1)
        # the replacement actor takes the next job
        pool.submit(Job(candidate_id="t-c0006", spec=specs[1], fidelity=1))
        events += drain(pool, 1)
    finally:
        pool.close()
    finished = {e.candidate_id: e.evaluation for e in events if e.kind == "finished"}
    failed = finished["t-c0005"]
    assert failed.status is Status.FAILED and failed.val_accuracy is None
    assert "worker was lost once" in failed.error and "--ray-retries allows 0" in failed.error
    assert [e.data["retrying"] for e in events if e.kind == "lost"] == [False]
    assert finished["t-c0006"].status is Status.OK


def test_a_cancelled_job_finishes_with_the_status_and_reason_given(cluster, digits, specs, tmp_path):
    pool = make_pool(cluster, digits, tmp_path, workers=1, pool_options={"test_inject": {"c0007": SLOW_START}})
    try:
        pool.submit(Job(candidate_id="t-c0007", spec=specs[0], fidelity=1))
        with pytest.raises(RuntimeError, match="pool is full"):
            pool.submit(Job(candidate_id="t-c0008", spec=specs[1]))
        assert pool.cancel("t-c0007", status=Status.STOPPED_EARLY, reason="forecast says no")
        events = drain(pool, 1)
    finally:
        pool.close()
    [ev] = [e.evaluation for e in events if e.kind == "finished"]
    assert ev.status is Status.STOPPED_EARLY and ev.error == "forecast says no"


def test_resources_size_the_pool_and_refuse_what_no_node_holds(cluster, digits, tmp_path):
    assert Resources(cpus=1).slots({"CPU": 8, "GPU": 2}) == 8
    assert Resources(cpus=1, gpus=0.5).slots({"CPU": 8, "GPU": 2}) == 4
    assert Resources(cpus=2, memory_mb=1024).slots({"CPU": 8, "memory": 3 * 2**30}) == 3
    with pytest.raises(ValueError, match="fraction"):
        Resources(gpus=1.5)
    with pytest.raises(ValueError, match="can hold one candidate"):
        make_pool(cluster, digits, tmp_path, resources=Resources(cpus=1, gpus=1))
    pool = make_pool(cluster, digits, tmp_path, workers=5)
    try:
        assert pool.capacity == 2 and "holds 2 candidates" in pool.notes[0]
    finally:
        pool.close()



def test_an_actor_killed_while_it_starts_is_replaced_and_the_pool_starts(cluster, digits, specs, tmp_path):
    import threading

    def runners() -> set[int]:
        out = set()
        for name in filter(str.isdigit, os.listdir("/proc")):
            try:
                if Path(f"/proc/{name}/cmdline").read_bytes().startswith(b"ray::CandidateRunner"):
                    out.add(int(name))
            except OSError:
                continue
        return out

    earlier = runners()  # actors of earlier tests' pools may still be exiting: not this one's
    made: list = []
    starting = threading.Thread(target=lambda: made.append(make_pool(cluster, digits, tmp_path, workers=1)))
    starting.start()
    killed, end = None, time.monotonic() + 120
    while killed is None and starting.is_alive() and time.monotonic() < end:
        for pid in runners() - earlier:
            os.kill(pid, signal.SIGKILL)
            killed = pid
            break
        time.sleep(0.01)
    starting.join(timeout=300)
    assert killed is not None, "no actor process was seen starting"
    assert made, "the pool did not start"
    pool = made[0]
    try:
        assert pool.lost == 1 and pool.nodes[0]["pid"] != killed
        pool.submit(Job(candidate_id="c1", spec=specs[0], seed=0))
        finished = [e for e in drain(pool, 1) if e.kind == "finished"]
        assert pool.result("c1").status is Status.OK and len(finished) == 1
    finally:
        pool.close()


# Starts a private cluster in a child (the coordinator) while being a child subreaper, as a
# systemd user session, tmux or a container's init are: an orphan is re-parented here, not to
# pid 1. Kills the coordinator and prints what of its cluster is still alive 20 s later.
_SUPERVISOR = r"""
import ctypes, json, os, signal, subprocess, sys, time
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
owner = subprocess.Popen([sys.executable, "-c", "import time\nfrom evaluator.pools.ray_cluster import connect\n"
                          "connect(None, num_cpus=1)\nprint('up', flush=True)\ntime.sleep(600)"],
                         stdout=subprocess.PIPE, text=True)
assert owner.stdout.readline().strip() == "up"

def table():
    out = {}
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = open(f"/proc/{name}/stat").read().rsplit(") ", 1)[1].split()
            cmd = open(f"/proc/{name}/cmdline", "rb").read().replace(b"\0", b" ").decode()[:80]
        except (OSError, IndexError):
            continue
        out[int(name)] = (int(stat[1]), stat[0], cmd)
    return out

def tree(root):
    t, found, grew = table(), {root}, True
    while grew:
        more = {p for p, (pp, _, _) in t.items() if pp in found and p not in found}
        found |= more
        grew = bool(more)
    return {p: t[p][2] for p in found - {root} if t[p][1] not in "ZX"}

end = time.monotonic() + 60
while not any(c.startswith("ray::DashboardAgent") for c in tree(owner.pid).values()) and time.monotonic() < end:
    time.sleep(0.2)
cluster = tree(owner.pid)
owner.kill()
owner.wait()
end = time.monotonic() + 20
while time.monotonic() < end:
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass
    alive = {p: c for p, c in tree(os.getpid()).items() if p in cluster}
    if not alive:
        break
    time.sleep(0.2)
for p in alive:
    os.kill(p, signal.SIGKILL)
print(json.dumps({"cluster": sorted(cluster.values()), "alive": sorted(alive.values())}))
"""


def test_a_killed_coordinator_leaves_no_process_of_its_private_cluster():
    """SIGKILL the process that started a private cluster under a child subreaper: the cluster's
    reaper ends every process of it, the dashboard and runtime-env agents included (Ray starts
    them without the cluster's marker in their environment, and they end themselves only when
    re-parented to pid 1: under a subreaper they used to outlive the kill)."""
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _SUPERVISOR], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert any(c.startswith("ray::RuntimeEnvAgent") for c in result["cluster"]), result
    assert result["alive"] == [], f"outlived their coordinator: {result['alive']}"
