"""Multi-objective searches: measurements before training, hard constraints that reject candidates
untrained, the Pareto front as the answer, and screening proposals by a zero-cost proxy."""

from __future__ import annotations

import json

import pytest

from agent.config import Settings
from agent.engine.runner import run_search
from agent.proposers.base import Proposal, ProposalContext, Proposer
from agent.store import History
from evaluator.objectives import Objectives, dominates
from evaluator.spaces import get_space
from tests.conftest import run_cli

DIGITS = dict(input_shape=(1, 8, 8), num_classes=10)


class TinyAndHuge(Proposer):
    """Alternates tiny convnets (well under a millisecond) with huge ones (tens of milliseconds)."""

    name = "tiny-and-huge"

    def __init__(self, space, seed: int = 0) -> None:
        super().__init__(space, seed)
        self.k = 0

    def propose(self, n: int, context: ProposalContext) -> list[Proposal]:
        out = []
        for _ in range(n):
            self.k += 1
            if self.k % 2:
                spec = {"stem": {"channels": 8}, "stages": [{"channels": 8 + 4 * self.k, "stride": 2}]}
            else:
                spec = {"stem": {"channels": 256}, "stages": [{"channels": 512, "depth": 3 + self.k % 3}]}
            out.append(Proposal(spec=spec))
        return out


@pytest.mark.slow
def test_a_latency_limit_rejects_slow_candidates_untrained_and_the_answer_is_the_front(tmp_path):
    home = tmp_path / "home"
    settings = Settings(home=home, task="digits", final_seeds=1, device="cpu", budget=2, epochs=2, proxies=[],
                        objectives=["accuracy", "latency"], max_latency_ms=5.0)
    summary = run_search(settings, proposer=TinyAndHuge(get_space("layers", **DIGITS)))
    assert summary.evaluations == 2 and summary.counts["ok"] == 2 and summary.counts["invalid"] >= 1
    h = History(home)
    rows = h.run_candidates(summary.run_id)
    for r in rows:
        m = r["measurements"]
        assert m["latency_ms"] > 0 and m["params"] > 0 and m["flops"] > 0 and "cpu" in m["latency_device"]
        cand = h.get_candidate(r["candidate_id"])
        if r["status"] == "invalid":
            assert m["latency_ms"] > 5.0 and cand["evaluations"] == []  # never trained
            assert "batch-1 latency" in r["error"] and "exceeds --max-latency-ms 5" in r["error"]
            assert "measured untrained" in r["error"]
        else:
            assert r["status"] == "ok" and m["latency_ms"] <= 5.0
    assert sum(r["measurements"]["latency_ms"] > 5.0 for r in rows) == summary.counts["invalid"]
    assert summary.objectives == ["accuracy", "latency"] and summary.pretraining["rejected_by_constraints"] >= 1
    # the front: every member is an ok candidate no other ok candidate dominates, best accuracy first
    objectives = Objectives.parse("accuracy,latency")
    ok = {r["candidate_id"]: objectives.vector({"val_accuracy": r["val_accuracy"], **r["measurements"]})
          for r in rows if r["status"] == "ok"}
    front = summary.pareto
    assert front and [m["val_accuracy"] for m in front] == sorted((m["val_accuracy"] for m in front), reverse=True)
    expected = {cid for cid, v in ok.items() if not any(dominates(w, v) for w in ok.values())}
    assert {m["candidate_id"] for m in front} == expected
    for m in front:
        assert m["latency_ms"] == h.get_candidate(m["candidate_id"])["measurements"]["latency_ms"] and "summary" in m
    assert summary.best.candidate_id == front[0]["candidate_id"]
    stored = h.get_run(summary.run_id)["summary"]
    assert stored["pareto"] == front  # stored with the run


class Widths(Proposer):
    """Small convnets of growing width (distinct synflow scores, quick to train)."""

    name = "widths"

    def __init__(self, space, seed: int = 0) -> None:
        super().__init__(space, seed)
        self.widths = iter([8, 24, 16, 12, 10, 20, 14, 18])

    def propose(self, n: int, context: ProposalContext) -> list[Proposal]:
        return [Proposal(spec={"stem": {"channels": 8}, "stages": [{"channels": next(self.widths), "stride": 2}]})
                for _ in range(n)]


@pytest.mark.slow
def test_screening_trains_the_best_of_each_batch_by_the_proxy(tmp_path):
    home = tmp_path / "home"
    settings = Settings(home=home, task="digits", final_seeds=1, device="cpu", budget=2, epochs=1,
                        screen="synflow", screen_factor=3, proxies=["synflow"])
    summary = run_search(settings, proposer=Widths(get_space("layers", **DIGITS)))
    assert summary.evaluations == 2 and summary.counts["invalid"] == 4 and summary.pretraining["screened_out"] == 4
    rows = History(home).run_candidates(summary.run_id)
    assert summary.proposals == 6 and len(rows) == 6
    for batch in (rows[:3], rows[3:]):
        trained = [r for r in batch if r["status"] == "ok"]
        assert len(trained) == 1
        best = max(batch, key=lambda r: r["measurements"]["proxy_synflow"])
        assert trained[0]["candidate_id"] == best["candidate_id"]
        for r in batch:
            if r is not best:
                assert r["error"].startswith("screened out before training: synflow ")
                assert "of 3 proposals made together; the best 1 train" in r["error"]
    # the worker's own score of the trained candidate (on its training batch) is recorded beside the probe's
    ev = History(home).get_candidate(trained[0]["candidate_id"])["evaluations"][0]
    assert ev["metrics"]["proxy_synflow"] > 0


@pytest.mark.slow
def test_the_acceptance_command_returns_the_front_and_trains_nothing_over_the_limit(tmp_path):
    home = tmp_path / "home"
    out = run_cli("search", "--task", "digits", "--objectives", "accuracy,latency", "--max-latency-ms", "1.0",
                  "--budget", "2", "--epochs", "1", "--final-seeds", "1", "--proxies", "none", "--json",
                  home=home, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout)
    assert summary["status"] == "done" and summary["evaluations"] == 2
    assert summary["pareto"] and all({"candidate_id", "val_accuracy", "latency_ms"} <= set(m) for m in summary["pareto"])
    h = History(home)
    for r in h.run_candidates(summary["run_id"]):
        trained = bool(h.get_candidate(r["candidate_id"])["evaluations"])
        over = r["measurements"].get("latency_ms", 0) > 1.0
        assert not (trained and over), r
        assert trained or r["status"] == "invalid"
    bad = run_cli("search", "--task", "digits", "--objectives", "latency", home=home)
    assert bad.returncode == 2 and "do not include accuracy" in bad.stderr
