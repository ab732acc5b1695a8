"""Searches that train: faults inside a search, the CLI on digits, your own data, cifar10 from
a local copy, and Ctrl-C in the middle of a training."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from agent.config import Settings
from agent.engine.runner import run_search
from agent.store import History
from evaluator.data.cifar10 import ARCHIVE
from tests.conftest import ROOT, default_sigint, run_cli, child_env
from tests.evaluator.test_data import make_cifar_archive

FAULTS = {
    "c0001": "raise ValueError('candidate exploded')",
    "c0002": "import torch.nn.functional as F\n_ce = F.cross_entropy\nF.cross_entropy = lambda *a, **k: _ce(*a, **k) * float('nan')",
    "c0003": "hog = bytearray(8 * 1024 ** 3)",
    "c0004": "import os\nos._exit(7)",
}  # a hang (timeout) is in the security battery (tests/security) and tests/evaluator/test_training_pool.py


@pytest.mark.slow
def test_faults_are_recorded_and_the_search_goes_on(tmp_path):
    home = tmp_path / "home"
    # small networks (--max-flops) train an epoch in seconds
    summary = run_search(Settings(home=home, task="digits", proposer="random", budget=6, epochs=1, final_seeds=2,
                                  device="cpu", max_flops=20_000_000, proxies=[]), test_inject=FAULTS)
    assert summary.status == "done" and summary.evaluations == 6
    assert summary.counts["failed"] == 4 and summary.counts["ok"] == 2
    h = History(home)
    by_seq = {c["candidate_id"][-5:]: c for c in h.run_candidates(summary.run_id)}
    errors = {suffix: h.get_candidate(by_seq[suffix]["candidate_id"])["error"] for suffix in FAULTS}
    assert "the candidate raised: ValueError: candidate exploded" in errors["c0001"]
    assert "NaN loss" in errors["c0002"]
    assert "memory limit (4096 MB) exceeded" in errors["c0003"]
    assert "exited with code 7" in errors["c0004"]
    for suffix in FAULTS:
        assert by_seq[suffix]["status"] == "failed" and by_seq[suffix]["val_accuracy"] is None
    assert summary.best.candidate_id[-5:] in {"c0000", "c0005"}
    assert summary.best.test_accuracy is not None and summary.best.seeds == [0, 1]
    assert "test split, mean of 2 retraining(s) from scratch (seeds 0, 1), trained on cpu" == summary.best.test_source


@pytest.mark.slow
def test_cli_digits_search_records_curves_and_the_three_seed_final_report(tmp_path):
    home = tmp_path / "home"
    # --max-flops keeps the random samples small (seed 0 draws a 100M-MAC network otherwise): a minute less
    out = run_cli("search", "--task", "digits", "--proposer", "evolution", "--budget", "3", "--epochs", "3",
                  "--max-flops", "20000000", "--json", home=home, timeout=600)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["evaluations"] == 3 and summary["counts"]["ok"] == 3 and summary["best"]["flops"] <= 20_000_000
    assert out.stderr.count(" epochs, ") == 3 and out.stderr.count("final report: retraining") == 3
    best = summary["best"]
    assert 0.5 < best["val_accuracy"] <= 1 and 0.5 < best["test_accuracy"] <= 1
    assert best["seeds"] == [0, 1, 2] and best["test_accuracy_std"] >= 0
    shown = json.loads(run_cli("show", best["candidate_id"], "--json", home=home).stdout)
    assert shown["params"] == best["params"] > 0 and shown["flops"] == best["flops"] > 0
    search = [e for e in shown["evaluations"] if e["purpose"] == "search"]
    assert [p["epoch"] for p in search[0]["curve"]] == [1, 2, 3]
    assert len([e for e in shown["evaluations"] if e["purpose"] == "final"]) == 3
    runs = json.loads(run_cli("history", "--json", home=home).stdout)["runs"]
    assert runs[0]["evaluations"] == 3 and runs[0]["status"] == "done"


@pytest.mark.slow
def test_cli_search_on_your_own_npz_file(tmp_path):
    rng = np.random.default_rng(0)
    y = np.arange(90) % 3
    x = rng.normal(size=(90, 1, 6, 6)).astype(np.float32) + y[:, None, None, None]  # separable classes
    np.savez(tmp_path / "mine.npz", x_train=x[:60], y_train=y[:60], x_test=x[60:], y_test=y[60:])
    out = run_cli("search", "--task", f"file:{tmp_path / 'mine.npz'}", "--budget", "2", "--epochs", "2",
                  "--final-seeds", "1", "--json", home=tmp_path / "home", timeout=300)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["task"] == f"file:{tmp_path / 'mine.npz'}" and summary["counts"]["ok"] == 2
    assert summary["best"]["test_accuracy"] is not None


@pytest.mark.slow
def test_cli_cifar10_from_a_local_copy(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    make_cifar_archive(data / ARCHIVE)
    out = run_cli("search", "--task", "cifar10", "--data-dir", str(data), "--budget", "1", "--epochs", "1",
                  "--final-seeds", "1", "--json", home=tmp_path / "home", timeout=300)
    # the archive's MD5 is not the real one: the loader refuses it and says so
    assert out.returncode == 2 and "MD5" in out.stderr and "Traceback" not in out.stderr
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    import tarfile

    with tarfile.open(data / ARCHIVE) as tar:
        tar.extractall(unpacked, filter="data")
    out = run_cli("search", "--task", "cifar10", "--data-dir", str(unpacked), "--budget", "1", "--epochs", "1",
                  "--final-seeds", "1", "--json", home=tmp_path / "home", timeout=300)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["counts"]["ok"] == 1


def _workers_of(path) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = open(f"/proc/{entry}/cmdline", "rb").read().decode(errors="replace")
            except OSError:
                continue
            if "evaluator.job.worker" in cmdline and str(path) in cmdline:
                pids.append(int(entry))
    return pids


@pytest.mark.parametrize("sig, code, word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
                         ids=["ctrl-c", "kill"])
@pytest.mark.slow
def test_stopping_during_training_marks_the_run_interrupted_and_requeues_the_candidate(tmp_path, sig, code, word):
    home = tmp_path / "home"
    env = child_env() | {"AGENT_HOME": str(home)}
    proc = subprocess.Popen([sys.executable, "-m", "agent", "search", "--task", "digits", "--budget", "50",
                             "--epochs", "40", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
                            preexec_fn=default_sigint)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not _workers_of(home):
        time.sleep(0.2)
    assert _workers_of(home), "no worker started"
    time.sleep(1.0)
    proc.send_signal(sig)
    try:
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == code, stderr
    assert word in stderr and "Traceback" not in stderr
    time.sleep(0.5)
    assert not _workers_of(home), "a worker outlived its coordinator"
    h = History(home)
    (run,) = h.list_runs()
    assert run["status"] == "interrupted"
    candidates = h.run_candidates(run["run_id"])
    assert candidates and not [c for c in candidates if c["status"] == "running"]
    assert [c["status"] for c in candidates if c["status"] == "queued"]
    finished = [e for e in h.events(run["run_id"]) if e["kind"] == "run_finished"]
    assert finished and finished[-1]["payload"]["requeued"]


@pytest.mark.slow
def test_cli_eval_trains_one_layers_spec_and_rejects_a_bad_one(tmp_path):
    from tests.evaluator.test_cuda import SPEC

    home = tmp_path / "home"
    out = run_cli("eval", "--task", "digits", "--spec", json.dumps(SPEC), "--epochs", "2", "--final", "--final-seeds", "1",
                  "--json", home=home, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["status"] == "ok" and len(result["curve"]) == 2 and result["val_accuracy"] > 0.5
    assert result["test_accuracy"] > 0.5 and result["params"] == 52202
    bad = dict(SPEC, stages=[dict(SPEC["stages"][0], kernel=4)])
    out = run_cli("eval", "--task", "digits", "--spec", json.dumps(bad), "--json", home=home)
    assert out.returncode == 2 and "stages" in out.stderr and "kernel" in out.stderr and "Traceback" not in out.stderr
