"""Warm workers: spares started ahead of their jobs, each in its own sandbox, one job each.

Real worker processes on the real digits data, as in test_training_pool.py. No timings are
asserted here (bench/pool_overhead.py measures them); only what the overhead records mean.
"""

from __future__ import annotations

import os
import random
import signal
import time

import pytest

from evaluator.pools.base import Job
from evaluator.records import Status
from evaluator.spaces import get_space
from evaluator.pools.training import TrainingPool
from sandbox.isolation import Isolation
from sandbox.limits import Limits
from tests.security.processes import descendants, leftovers

PHASES = ("prepare", "boot", "first_step", "finish")


@pytest.fixture(scope="module")
def spec(digits):
    space = get_space("layers", input_shape=digits.input_shape, num_classes=digits.num_classes)
    return space.sample(random.Random(0))


def spares(pool: TrainingPool, n: int = 1, timeout: float = 60.0) -> list:
    """The pool's spares once it holds ``n`` of them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with pool._lock:
            ready = list(pool.spares.ready)
        if len(ready) >= n:
            return ready
        time.sleep(0.05)
    raise AssertionError(f"the pool did not start {n} spare(s) in {timeout} s")


def finish(pool: TrainingPool, job: Job):
    """Submit ``job``; its evaluation and the pid and folder of the process that ran it."""
    pool.submit(job)
    with pool._lock:
        run = pool._running[job.candidate_id]
    pid, scratch = run.process.pid, run.scratch
    while True:
        done = [e for e in pool.events(timeout=None) if e.kind == "finished"]
        if done:
            return done[0].evaluation, pid, scratch


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(") ", 1)[1][:1] != "Z"
    except OSError:
        return False


def check_overhead(evaluation, warm: bool) -> None:
    over = evaluation.metrics["overhead"]
    assert over["warm"] is warm
    assert all(isinstance(over[k], float) and over[k] >= 0 for k in PHASES), over


@pytest.mark.slow
def test_a_warm_job_trains_exactly_as_a_cold_one(digits, spec, tmp_path):
    cold = TrainingPool(digits, "layers", workdir=tmp_path / "cold", epochs=2, threads=1, isolation=Isolation())
    warm = TrainingPool(digits, "layers", workdir=tmp_path / "warm", epochs=2, threads=1, isolation=Isolation(), warm=1)
    try:
        a, _, _ = finish(cold, Job(candidate_id="run-c0001", spec=spec, seed=3))
        spares(warm)
        b, _, _ = finish(warm, Job(candidate_id="run-c0001", spec=spec, seed=3))
    finally:
        cold.close()
        warm.close()
    assert a.status is Status.OK and b.status is Status.OK, (a.error, b.error)
    assert [(p.val_accuracy, p.train_loss) for p in a.curve] == [(p.val_accuracy, p.train_loss) for p in b.curve]
    assert a.metrics["params"] == b.metrics["params"] and a.metrics["sandbox"] == b.metrics["sandbox"]
    check_overhead(a, warm=False)
    check_overhead(b, warm=True)


@pytest.mark.slow
def test_a_spare_runs_one_job_only_and_injected_jobs_start_cold(digits, spec, tmp_path):
    pool = TrainingPool(digits, "layers", workdir=tmp_path / "w", epochs=1, threads=1, warm=1,
                        test_inject={"inject": "x = 1"})
    try:
        [spare] = spares(pool)
        assert pool.in_flight == 0 and pool.free_slots() == 1  # a spare is not a job
        ran = []
        for i in range(2):
            ev, pid, scratch = finish(pool, Job(candidate_id=f"run-c000{i}", spec=spec))
            assert ev.status is Status.OK, ev.error
            check_overhead(ev, warm=True)
            ran.append((pid, scratch))
            spares(pool)  # its replacement
        assert ran[0][0] == spare.process.pid and ran[0][1] == spare.scratch
        assert len({pid for pid, _ in ran}) == 2 and len({s for _, s in ran}) == 2  # never one process twice
        assert not any(s.exists() for _, s in ran) and not alive(ran[0][0])
        [waiting] = spares(pool)
        ev, pid, _ = finish(pool, Job(candidate_id="run-inject", spec=spec))
        assert ev.status is Status.OK and pid not in {p for p, _ in ran} | {waiting.process.pid}
        check_overhead(ev, warm=False)  # its own environment: a cold start, the spare left waiting
        assert spares(pool) == [waiting] and waiting.process.poll() is None
    finally:
        pool.close()


@pytest.mark.slow
def test_a_spare_killed_while_waiting_is_replaced_and_never_gets_a_job(digits, spec, tmp_path):
    pool = TrainingPool(digits, "layers", workdir=tmp_path / "w", epochs=1, threads=1, warm=1)
    try:
        [dead] = spares(pool)
        os.killpg(dead.process.pid, signal.SIGKILL)  # as an out-of-memory kill would
        while dead.process.poll() is None:
            time.sleep(0.05)
        ev, pid, _ = finish(pool, Job(candidate_id="run-c0001", spec=spec))
        assert ev.status is Status.OK, ev.error
        assert pid != dead.process.pid
        [replacement] = spares(pool)
        assert replacement.process.pid != dead.process.pid and replacement.process.poll() is None
        deadline = time.monotonic() + 30
        while dead.scratch.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not dead.scratch.exists()  # the dead spare's folder is gone
    finally:
        pool.close()


@pytest.mark.slow
def test_a_spare_that_waited_longer_than_the_timeout_still_runs_its_job(digits, spec, tmp_path):
    pool = TrainingPool(digits, "layers", workdir=tmp_path / "w", epochs=1, threads=1, warm=1,
                        limits=Limits(wall_seconds=5))
    try:
        [spare] = spares(pool)
        time.sleep(5.5)  # the spare has been started longer than the job may run
        ev, pid, _ = finish(pool, Job(candidate_id="run-c0001", spec=spec))
    finally:
        pool.close()
    assert pid == spare.process.pid
    assert ev.status is Status.OK, ev.error
    check_overhead(ev, warm=True)


def test_close_kills_the_spares_and_removes_their_folders(digits, tmp_path):
    before = descendants()
    pool = TrainingPool(digits, "layers", workdir=tmp_path / "w", epochs=1, threads=1, warm=2, isolation=Isolation())
    held = spares(pool, 2)
    time.sleep(0.5)  # booting, or waiting for a key: either way close() ends them
    pool.close()
    assert not any(alive(s.process.pid) for s in held)
    assert not leftovers(before=before)
    jobs = tmp_path / "w" / "jobs"
    assert not jobs.exists() or not any(jobs.iterdir())
    assert pool.spares.ready == []


def test_a_negative_number_of_spares_is_refused(digits, tmp_path):
    with pytest.raises(ValueError, match="warm=-1"):
        TrainingPool(digits, "layers", workdir=tmp_path / "w", epochs=1, warm=-1)


def spare_seen_while_running(pool: TrainingPool, job: Job) -> bool:
    """Run ``job`` (it takes the pool's spare); whether a new spare was started before it finished."""
    pool.submit(job)
    seen = False
    while True:
        events = pool.events(timeout=0.05)
        with pool._lock:
            seen |= bool(pool.spares.ready)
        if any(e.kind == "finished" for e in events):
            return seen


@pytest.mark.slow
def test_a_spare_starts_only_on_a_core_the_running_jobs_leave_free(digits, spec, tmp_path, monkeypatch):
    """A spare's start on a core a job's threads use slows that job several times over
    (bench/pool_overhead.py --workload digits), so on a machine the jobs fill it waits for the job."""
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # the pool's cores
    full = TrainingPool(digits, "layers", workdir=tmp_path / "full", epochs=3, threads=2, isolation=Isolation(), warm=1)
    try:
        spares(full)
        assert not spare_seen_while_running(full, Job(candidate_id="r-c0001", spec=spec))
        spares(full)  # the job ended: now it starts
    finally:
        full.close()
    # 1 thread of 2 cores: the replacement starts beside the job (after half a second: the job trains longer)
    half = TrainingPool(digits, "layers", workdir=tmp_path / "half", epochs=10, threads=1, isolation=Isolation(), warm=1)
    try:
        spares(half)
        assert spare_seen_while_running(half, Job(candidate_id="r-c0002", spec=spec))
    finally:
        half.close()
