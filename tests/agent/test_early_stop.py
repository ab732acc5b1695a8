"""Early stopping inside a training search: forecasts after every epoch, stops, audits, the
history's forecast rows, and the epochs the summary accounts for.

Candidates c0003.. are sabotaged through the pool's test hook (their optimizer never steps, so
they stay at chance): a real worker, a real curve, nothing in the search knows."""

from __future__ import annotations

import pytest

from agent.config import Settings
from agent.engine.early_stop import EarlyStopMonitor
from agent.engine.runner import run_search
from agent.store import History
from tests.conftest import run_cli
from evaluator.errors import UserInputError
from agent.proposers.base import Proposal, ProposalContext, Proposer
from evaluator.spaces import get_space

FROZEN = "import torch\ntorch.optim.SGD.step = lambda self, closure=None: None"
EPOCHS = 8


class SmallNets(Proposer):
    """Small distinct convnets (a second or two per candidate on digits), so the test stays quick."""

    name = "small"

    def __init__(self, space, seed: int = 0) -> None:
        super().__init__(space, seed)
        self.widths = iter(range(8, 200, 2))

    def propose(self, n: int, context: ProposalContext) -> list[Proposal]:
        return [Proposal(spec={"stem": {"channels": 8}, "stages": [{"channels": next(self.widths), "stride": 2}]})
                for _ in range(n)]


def small_search(home, test_inject=None, **kw):
    settings = Settings(home=home, task="digits", final_seeds=1, device="cpu", **kw)
    return run_search(settings, proposer=SmallNets(get_space("layers", input_shape=(1, 8, 8), num_classes=10)),
                      test_inject=test_inject)


@pytest.mark.slow
def test_a_search_stops_hopeless_candidates_audits_some_and_records_every_forecast(tmp_path):
    home = tmp_path / "home"
    inject = {f"c{i:04d}": FROZEN for i in range(3, 6)}
    # audits are drawn by a hash of the (random) candidate ids: 0 here makes every stop happen;
    # the audit path is checked with audit_fraction 1 below
    summary = small_search(home, budget=6, epochs=EPOCHS, early_stop="forecast", audit_fraction=0.0, test_inject=inject)
    assert summary.status == "done" and summary.evaluations == 6
    h = History(home)
    rows = {c["candidate_id"][-5:]: c for c in h.run_candidates(summary.run_id)}
    audited, stopped = set(), set(inject)
    for suffix in stopped:
        cand = h.get_candidate(rows[suffix]["candidate_id"])
        assert cand["status"] == "stopped_early", cand["error"]
        assert cand["error"].startswith("stopped early after epoch ") and "P(beat the incumbent" in cand["error"]
        (ev,) = cand["evaluations"]
        assert 5 <= len(ev["curve"]) < EPOCHS and ev["val_accuracy"] is None
        assert cand["forecasts"][-1]["action"] == "stop" and cand["forecasts"][-1]["p_beat"] < 0.05
    for suffix in audited:
        cand = h.get_candidate(rows[suffix]["candidate_id"])
        assert cand["status"] == "ok" and len(cand["evaluations"][0]["curve"]) == EPOCHS
        assert "audit" in [f["action"] for f in cand["forecasts"]]
    for suffix in ("c0000", "c0001", "c0002"):  # the references: they train to the end
        cand = h.get_candidate(rows[suffix]["candidate_id"])
        assert cand["status"] == "ok" and [f["action"] for f in cand["forecasts"]] == ["continue"] * (EPOCHS - 1)
        assert all(0 <= p["train_accuracy"] <= 1 for p in cand["evaluations"][0]["curve"])
    curves = [len(e["curve"]) for c in rows.values() for e in h.get_candidate(c["candidate_id"])["evaluations"]
              if e["purpose"] == "search"]
    assert summary.epochs_trained == sum(curves) < 6 * EPOCHS
    assert summary.epochs_saved == 6 * EPOCHS - sum(curves)
    report = summary.early_stop
    assert report["stopped"] == len(stopped) == summary.counts["stopped_early"]
    assert report["audits_finished"] == len(audited) and report["audit_would_have_won"] == 0
    assert report["forecasts"] == len(h.forecasts(summary.run_id))
    assert summary.best.candidate_id[-5:] in {"c0000", "c0001", "c0002"}


@pytest.mark.slow
def test_without_early_stop_every_epoch_is_trained_and_counted(tmp_path):
    summary = small_search(tmp_path / "home", budget=2, epochs=3)
    assert summary.epochs_trained == 6 and summary.epochs_saved == 0 and summary.early_stop is None
    assert History(tmp_path / "home").forecasts(summary.run_id) == []


@pytest.mark.slow
def test_early_stop_on_a_table_task_is_refused_before_anything_is_recorded(tiny_tables, tmp_path):
    with pytest.raises(UserInputError, match="needs a task that trains") as info:
        run_search(Settings(home=tmp_path / "home", task="nb201-cifar10", benchmark_dir=tiny_tables, budget=3,
                            early_stop="forecast"))
    assert "--task digits" in info.value.hint
    assert History(tmp_path / "home").list_runs() == []
    summary = run_search(Settings(home=tmp_path / "home", task="nb201-cifar10", benchmark_dir=tiny_tables, budget=3))
    assert summary.epochs_trained is None and summary.epochs_saved is None
    out = run_cli("search", "--task", "nb201-cifar10", "--benchmark-dir", str(tiny_tables), "--early-stop", "forecast",
                  home=tmp_path / "home")
    assert out.returncode == 2 and "needs a task that trains" in out.stderr and "--task digits" in out.stderr


def test_the_monitor_scores_audits_against_the_incumbent_of_their_time():
    from evaluator.records import Candidate, CurvePoint, Evaluation, Status

    mon = EarlyStopMonitor("r", 10, audit_fraction=1.0)  # every would-be stop is audited

    def finish(cid: str, values: list[float]) -> None:
        for e, v in enumerate(values, 1):
            mon.on_epoch(cid, e, v)
        cand = Candidate(candidate_id=cid, run_id="r", seq=0, space="layers", spec={}, proposer="t")
        mon.on_finished(cand, Evaluation(candidate_id=cid, status=Status.OK, val_accuracy=values[-1],
                                         curve=[CurvePoint(epoch=e, val_accuracy=v) for e, v in enumerate(values, 1)]))

    for i, top in enumerate((0.90, 0.92, 0.94)):
        finish(f"ref{i}", [top - 0.4 / e for e in range(1, 11)])
    assert mon.incumbent == pytest.approx(0.94 - 0.04)
    finish("late-bloomer", [0.1] * 6 + [0.95, 0.96, 0.97, 0.98])  # looks hopeless at epoch 5, wins at the end
    assert mon.stopped == {} and len(mon.audits) == 1
    report = mon.report()
    assert report["audits_finished"] == 1 and report["audit_would_have_won"] == 1 and report["stopped"] == 0
    assert report["audit_coverage80"] == 0.0 and report["audit_mean_abs_error"] > 0.5
    assert [r.action for r in mon.drain() if r.candidate_id == "late-bloomer"][4:6] == ["audit", "audit"]
    assert mon.drain() == []
