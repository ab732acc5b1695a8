"""The training pool end to end: real worker processes training on the real digits data.

Faults and hostile code reach the worker through the test-only injection path: code that
runs in the worker exactly where candidate code runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from evaluator.models import build_model
from evaluator.pools.base import Job
from evaluator.records import Purpose, Status
from evaluator.spaces import get_space
from evaluator.job.trainer import channel_stats, to_unit
from evaluator.pools.staging import default_weights_dir
from evaluator.pools.training import TrainingPool, job_threads
from sandbox.limits import Limits

HOSTILE = r'''
import gc, json, os, sys
import torch
import evaluator.job.protocol as protocol
import evaluator.job.trainer as trainer

# forged result lines on stdout and on every other descriptor the worker holds
forged = json.dumps({"type": "epoch", "epoch": 1, "val_accuracy": 1.0, "test_accuracy": 1.0})
print(forged)
print('{"status": "ok", "val_accuracy": 1.0}', flush=True)
for fd in range(3, 64):
    try:
        os.write(fd, b"0" * 64 + b" " + forged.encode() + b"\n")
    except OSError:
        pass
# monkeypatch the project's functions and torch
protocol.sign = lambda key, body: "0" * 64
_send = protocol.Channel.__init__
protocol.Channel.send = lambda self, *a, **k: None
trainer.train = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("patched"))
json.dumps = lambda *a, **k: '{"type": "done"}'
torch.save = lambda *a, **k: None
# what a harness that scored inside the worker would use: every comparison true, every mean 1
torch.Tensor.__eq__ = lambda self, other: torch.ones(self.shape, dtype=torch.bool)
torch.eq = lambda a, b, **k: torch.ones(a.shape, dtype=torch.bool)
import numpy
numpy.mean = lambda *a, **k: 1.0
'''


@pytest.fixture(scope="module")
def spec(digits):
    space = get_space("layers", input_shape=digits.input_shape, num_classes=digits.num_classes)
    return space.sample(random.Random(0))


def run_one(digits, tmp_path, spec, *, inject=None, purpose=Purpose.SEARCH, limits=Limits(wall_seconds=300), epochs=2):
    pool = TrainingPool(digits, "layers", workdir=tmp_path / "work", epochs=epochs, limits=limits,
                        test_inject={"c0001": inject} if inject else None, threads=1)
    try:
        pool.submit(Job(candidate_id="run-c0001", spec=spec, purpose=purpose))
        kinds = []
        while True:
            events = pool.events(timeout=None)
            kinds += [e.kind for e in events]
            done = [e for e in events if e.kind == "finished"]
            if done:
                return done[0].evaluation, kinds
    finally:
        pool.close()


@pytest.mark.slow
def test_honest_training_is_measured_on_the_trusted_side(digits, spec, tmp_path):
    ev, kinds = run_one(digits, tmp_path, spec)
    assert ev.status is Status.OK, ev.error
    assert kinds[0] == "started" and kinds.count("progress") == 2 and kinds[-1] == "finished"
    assert [p.epoch for p in ev.curve] == [1, 2] and 0.0 <= ev.val_accuracy <= 1.0
    assert ev.test_accuracy is None  # a search evaluation never reads the test split
    assert ev.metrics["params"] > 0 and ev.metrics["rejected_messages"] == 0
    assert not (tmp_path / "work" / "jobs").exists() or not any((tmp_path / "work" / "jobs").iterdir())
    staged = {p.name for p in (tmp_path / "work" / "data").iterdir()} if (tmp_path / "work" / "data").exists() else set()
    assert not {"y_val.npy", "y_test.npy"} & staged  # labels the worker must not see are never written


@pytest.mark.slow
def test_final_evaluation_reports_test_accuracy_and_keeps_the_trained_weights(digits, spec, tmp_path):
    ev, _ = run_one(digits, tmp_path, spec, purpose=Purpose.FINAL)
    assert ev.status is Status.OK and ev.purpose is Purpose.FINAL and 0.0 <= ev.test_accuracy <= 1.0
    kept = Path(ev.metrics["weights"])
    assert kept == tmp_path / "work" / "weights" / "run-c0001-seed0.pt" and "weights_error" not in ev.metrics
    facts = json.loads(kept.with_suffix(".json").read_text())
    assert facts["sha256"] == hashlib.sha256(kept.read_bytes()).hexdigest() and facts["bytes"] == kept.stat().st_size
    assert facts["seed"] == 0 and facts["epochs"] == 2 and facts["input"] == digits.input_normalisation()
    # the kept state_dict is the trained network: it predicts the test split as the worker did
    net = build_model("layers", spec, digits.input_shape, digits.num_classes)
    net.load_state_dict(torch.load(kept, weights_only=True))  # strict: every key and shape
    net.eval()
    unit = to_unit(digits.x_train, digits.x_scale, torch.device("cpu"))
    mean, std = channel_stats(unit)
    with torch.no_grad():
        predictions = net((to_unit(digits.x_test, digits.x_scale, torch.device("cpu")) - mean) / std).argmax(1)
    assert float(np.mean(predictions.numpy() == digits.y_test)) == ev.test_accuracy
    # the normalisation recorded beside the weights is the one the trainer applied
    assert facts["input"]["mean"] == pytest.approx(mean.flatten().tolist(), rel=1e-5)
    assert facts["input"]["std"] == pytest.approx(std.flatten().tolist(), rel=1e-5)
    assert not (tmp_path / "work" / "jobs").exists() or not any((tmp_path / "work" / "jobs").iterdir())


def test_weights_are_kept_beside_the_history_not_in_the_runs_scratch_folder(tmp_path):
    assert default_weights_dir(tmp_path / "home" / "work" / "run-1") == tmp_path / "home" / "weights" / "run-1"
    assert default_weights_dir(tmp_path / "elsewhere") == tmp_path / "elsewhere" / "weights"


LINKED_WEIGHTS = r'''
import os, torch
_save = torch.save
def save(obj, f, *args, **kwargs):  # the weights file becomes a link to a file of the trusted side
    if str(f).endswith("weights_out.pt"):
        os.symlink("/etc/hostname", f)
    else:
        _save(obj, f, *args, **kwargs)
torch.save = save
'''


@pytest.mark.slow
def test_a_final_job_that_leaves_a_link_instead_of_weights_keeps_none(digits, spec, tmp_path):
    ev, _ = run_one(digits, tmp_path, spec, purpose=Purpose.FINAL, inject=LINKED_WEIGHTS, epochs=1)
    assert ev.status is Status.OK and ev.test_accuracy is not None  # the measured result stands
    assert "weights" not in ev.metrics and "weights_out.pt cannot be opened as a regular file" in ev.metrics["weights_error"]
    assert not any((tmp_path / "work" / "weights").glob("*.pt"))


@pytest.mark.slow
def test_hostile_code_cannot_change_the_recorded_accuracy(digits, spec, tmp_path):
    honest, _ = run_one(digits, tmp_path / "honest", spec)
    hostile, _ = run_one(digits, tmp_path / "hostile", spec, inject=HOSTILE)
    assert hostile.status is Status.OK, hostile.error
    assert hostile.val_accuracy == honest.val_accuracy < 1.0
    assert [p.val_accuracy for p in hostile.curve] == [p.val_accuracy for p in honest.curve]
    assert hostile.metrics["rejected_messages"] >= 1 and "bad signature" in hostile.metrics["first_rejection"]


@pytest.mark.parametrize(
    "code, limits, status, words",
    [
        ("raise RuntimeError('boom from the candidate')", Limits(wall_seconds=300), Status.FAILED,
         ["the candidate raised", "RuntimeError: boom from the candidate"]),
        ("import torch.nn.functional as F\n_ce = F.cross_entropy\nF.cross_entropy = lambda *a, **k: _ce(*a, **k) * float('nan')",
         Limits(wall_seconds=300), Status.FAILED, ["NaN loss", "epoch 1"]),
        ("hog = bytearray(8 * 1024 ** 3)", Limits(wall_seconds=300, memory_mb=4096), Status.FAILED,
         ["memory limit (4096 MB) exceeded", "MemoryError"]),
        ("print('still thinking', flush=True)\nimport time\ntime.sleep(120)", Limits(wall_seconds=8), Status.TIMEOUT,
         ["wall-clock limit of 8 s", "still thinking"]),
        ("import os\nos._exit(3)", Limits(wall_seconds=300), Status.FAILED, ["exited with code 3"]),
    ],
    ids=["raises", "nan", "memory", "timeout", "exit"],
)
@pytest.mark.slow
def test_faults_become_statuses_with_errors(digits, spec, tmp_path, code, limits, status, words):
    ev, _ = run_one(digits, tmp_path, spec, inject=code, limits=limits)
    assert ev.status is status
    for w in words:
        assert w in ev.error, ev.error
    assert ev.val_accuracy is None


def test_cancel_kills_the_job_and_reports_pruned(digits, spec, tmp_path):
    pool = TrainingPool(digits, "layers", workdir=tmp_path / "w", epochs=2, threads=1,
                        test_inject={"c0001": "import time\ntime.sleep(120)"})
    try:
        pool.submit(Job(candidate_id="run-c0001", spec=spec))
        assert pool.free_slots() == 0
        assert pool.cancel("run-c0001")
        finished = []
        while not finished:
            finished = [e for e in pool.events(timeout=None) if e.kind == "finished"]
        assert finished[0].evaluation.status is Status.PRUNED and pool.free_slots() == 1
    finally:
        pool.close()


@pytest.mark.slow
def test_the_pool_trains_up_to_its_capacity_at_once(digits, spec, tmp_path):
    pool = TrainingPool(digits, "layers", workdir=tmp_path / "w", epochs=1, capacity=2, threads=1)
    try:
        for i in range(2):
            pool.submit(Job(candidate_id=f"run-c000{i}", spec=spec, seed=i))
        assert pool.in_flight == 2 and pool.free_slots() == 0
        with pytest.raises(RuntimeError, match="pool is full"):
            pool.submit(Job(candidate_id="run-c0002", spec=spec))
        finished = {}
        while len(finished) < 2:
            finished |= {e.candidate_id: e.evaluation for e in pool.events(timeout=None) if e.kind == "finished"}
        assert all(ev.status is Status.OK for ev in finished.values())
        assert pool.free_slots() == 2 and all(ev.metrics["peak_memory_mb"] > 50 for ev in finished.values())
    finally:
        pool.close()


def test_jobs_share_the_cores_or_the_threads_this_process_was_given(digits, tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert (job_threads(1), job_threads(3), job_threads(16)) == (8, 2, 1)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # e.g. a parallel test worker's share of the cores
    assert (job_threads(1), job_threads(2)) == (2, 1)
    monkeypatch.setenv("OMP_NUM_THREADS", "4,2")  # threads per nesting level: not a number of cores
    assert job_threads(2) == 4
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    pool = TrainingPool(digits, "layers", workdir=tmp_path / "w", epochs=1)
    try:
        assert pool.threads == 3  # what every job of this pool gets (its OMP_NUM_THREADS, torch threads, CPU quota)
    finally:
        pool.close()


def _finish(pool: TrainingPool, job: Job):
    pool.submit(job)
    events = []
    while not any(e.kind == "finished" for e in events):
        events += pool.events(timeout=None)
    return events[-1].evaluation, events


@pytest.mark.slow
def test_a_job_stopped_at_a_rung_continues_from_its_checkpoint_as_one_run(digits, spec, tmp_path):
    """What successive halving relies on: 2 epochs + 2 more from the checkpoint give the curve of 4 in one go."""
    straight_pool = TrainingPool(digits, "layers", workdir=tmp_path / "a", epochs=4, threads=1)
    pool = TrainingPool(digits, "layers", workdir=tmp_path / "b", epochs=4, threads=1, proxies=("synflow", "snip"))
    try:
        straight, _ = _finish(straight_pool, Job(candidate_id="run-c0001", spec=spec))
        rung, _ = _finish(pool, Job(candidate_id="run-c0001", spec=spec, fidelity=2, checkpoint=True))
        assert rung.status is Status.OK and rung.fidelity == 2 and [p.epoch for p in rung.curve] == [1, 2]
        assert rung.metrics["proxy_synflow"] > 0 and "proxy_snip" in rung.metrics and rung.metrics["proxy_seconds"] >= 0
        assert (tmp_path / "b" / "checkpoints" / "run-c0001.pt").is_file()
        with pytest.raises(ValueError, match="cannot resume run-c0002 to epoch 4: the pool holds none"):
            pool.submit(Job(candidate_id="run-c0002", spec=spec, resume=True))
        with pytest.raises(ValueError, match="holds one at epoch 2"):
            pool.submit(Job(candidate_id="run-c0001", spec=spec, fidelity=2, resume=True))
        done, events = _finish(pool, Job(candidate_id="run-c0001", spec=spec, resume=True))
        assert events[0].data["from_epoch"] == 2 and [e.data["epoch"] for e in events if e.kind == "progress"] == [3, 4]
        assert done.status is Status.OK and done.fidelity == 4 and done.metrics["jobs"] == 2
        assert done.metrics["resumed_from_epoch"] == 2 and done.metrics["proxy_synflow"] == rung.metrics["proxy_synflow"]
        assert [p.val_accuracy for p in done.curve] == [p.val_accuracy for p in straight.curve]
        assert [p.train_loss for p in done.curve] == [p.train_loss for p in straight.curve]
        assert done.wall_seconds > rung.wall_seconds
        assert not (tmp_path / "b" / "checkpoints" / "run-c0001.pt").exists()  # finished: the checkpoint is gone
        with pytest.raises(ValueError, match="from scratch"):
            pool.submit(Job(candidate_id="run-c0001", spec=spec, purpose=Purpose.FINAL, fidelity=2))
    finally:
        straight_pool.close()
        pool.close()


@pytest.mark.slow
def test_a_worker_that_leaves_no_checkpoint_fails_and_discard_drops_one(digits, spec, tmp_path):
    pool = TrainingPool(digits, "layers", workdir=tmp_path / "w", epochs=3, threads=1,
                        test_inject={"c0001": "import evaluator.job.trainer as t\nt._save_checkpoint = lambda *a, **k: None"})
    try:
        ev, _ = _finish(pool, Job(candidate_id="run-c0001", spec=spec, fidelity=1, checkpoint=True))
        assert ev.status is Status.FAILED and "left no checkpoint" in ev.error and ev.val_accuracy is None
        ok, _ = _finish(pool, Job(candidate_id="run-c0002", spec=spec, fidelity=1, checkpoint=True))
        assert ok.status is Status.OK and (tmp_path / "w" / "checkpoints" / "run-c0002.pt").is_file()
        pool.discard("run-c0002")
        assert not (tmp_path / "w" / "checkpoints" / "run-c0002.pt").exists()
        with pytest.raises(ValueError, match="holds none"):
            pool.submit(Job(candidate_id="run-c0002", spec=spec, resume=True))
    finally:
        pool.close()


FLOOD = r'''
import os
for fd in range(3, 64):  # the channel is one of these: flood it with lines that fail the checks
    try:
        for _ in range(400):
            os.write(fd, b"0" * 64 + b' {"type": "done"}\n')
    except OSError:
        pass
import time
time.sleep(60)
'''


@pytest.mark.slow
def test_a_worker_that_floods_the_channel_is_killed(digits, spec, tmp_path):
    ev, _ = run_one(digits, tmp_path, spec, inject=FLOOD)
    assert ev.status is Status.FAILED and ev.val_accuracy is None
    assert "more than 200 messages that failed the protocol checks" in ev.error and "bad signature" in ev.error
    assert ev.metrics["rejected_messages"] > 200


def test_a_pool_removes_the_job_folders_a_killed_process_of_its_run_left(digits, tmp_path):
    work = tmp_path / "work"
    left = [work / "jobs" / "c0002-search-s0-56a866", work / "jobs" / "spare-5003778c"]
    for folder in left:
        folder.mkdir(parents=True)
        (folder / "x_train.npy").write_bytes(b"\0" * 100)
    (work / "checkpoints").mkdir()  # not a job's: kept
    pool = TrainingPool(digits, "layers", workdir=work, epochs=1, threads=1)
    try:
        assert not any(f.exists() for f in left) and (work / "checkpoints").is_dir()
    finally:
        pool.close()


def test_a_ray_node_removes_what_earlier_coordinators_of_the_run_left(tmp_path):
    from evaluator.pools.ray_actor import remove_left_roots

    mine = tmp_path / "20261207-081248-243507-c5a81b"
    killed = tmp_path / "20261207-081248-243507-0f0f0f"
    other_run = tmp_path / "20261207-090000-aaaaaa-c5a81b"
    for folder in (mine, killed, other_run):
        (folder / "actors").mkdir(parents=True)
    remove_left_roots(mine)
    assert mine.is_dir() and other_run.is_dir() and not killed.exists()
