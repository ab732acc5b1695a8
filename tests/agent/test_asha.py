"""Successive halving inside a search (--early-stop asha|both): candidates stop at a rung, the best
continue from their checkpoints, the rest end pruned; nothing is lost or left waiting.

The scheduling cases run on recorded learning curves (the curves task replays them epoch by
epoch, in milliseconds); real training checks the checkpoints and the time limit."""

from __future__ import annotations

import pytest

from agent.config import Settings
from agent.engine.runner import run_search
from agent.store import History
from evaluator.errors import UserInputError
from tests.agent.test_early_stop import SmallNets, small_search
from tests.conftest import run_cli
from tests.evaluator.test_curves import cells, write_curves
from evaluator.spaces import get_space

EPOCHS = 4
BUDGET = 4


@pytest.mark.slow
def test_asha_trains_the_best_to_the_end_and_prunes_the_rest_at_their_rung(tmp_path):
    home = tmp_path / "home"
    summary = small_search(home, budget=BUDGET, epochs=EPOCHS, early_stop="asha", rungs=[1], proxies=[])
    assert summary.status == "done" and summary.evaluations == BUDGET and summary.stop_reason == "budget reached"
    counts = summary.counts
    assert counts["ok"] + counts["pruned"] == BUDGET and counts["ok"] >= 2 and counts["pruned"] >= 2
    h = History(home)
    rows = h.run_candidates(summary.run_id)
    assert {r["status"] for r in rows} <= {"ok", "pruned"}  # nothing left queued or running
    curves = {}
    for r in rows:
        cand = h.get_candidate(r["candidate_id"])
        (ev,) = [e for e in cand["evaluations"] if e["purpose"] == "search"]  # one record per candidate
        curves[r["candidate_id"]] = [p["epoch"] for p in ev["curve"]]
        if r["status"] == "ok":
            assert curves[r["candidate_id"]] == list(range(1, EPOCHS + 1)) and ev["metrics"]["jobs"] == 2
            assert ev["metrics"]["resumed_from_epoch"] == 1
        else:
            assert curves[r["candidate_id"]] == [1.0] and ev["val_accuracy"] is None
            assert cand["error"].startswith("pruned by successive halving at 1 of 4 epochs: validation accuracy ")
            assert ev["metrics"]["stopped_by"] == "asha" and 0 <= ev["metrics"]["rung_val_accuracy"] <= 1
    rung_events = [e for e in h.events(summary.run_id) if e["kind"] == "rung"]
    actions = [e["payload"]["action"] for e in rung_events]
    assert actions.count("wait") == BUDGET and actions.count("promote") == counts["ok"]
    assert actions.count("prune") == counts["pruned"]
    trained = sum(len(c) for c in curves.values())
    assert summary.epochs_trained == trained < BUDGET * EPOCHS and summary.epochs_saved == BUDGET * EPOCHS - trained
    assert summary.asha["rungs"] == [{"epochs": 1, "reached": BUDGET, "promoted": counts["ok"]}]
    assert summary.asha["pruned"] == counts["pruned"]
    # the best by validation is among those that trained to the end, and it got its final report
    assert summary.best.candidate_id in {r["candidate_id"] for r in rows if r["status"] == "ok"}
    assert summary.best.test_accuracy is not None


@pytest.mark.slow
def test_a_time_limit_prunes_the_candidates_waiting_at_a_rung(tmp_path):
    settings = Settings(home=tmp_path / "home", task="digits", final_seeds=1, device="cpu", budget=50, epochs=EPOCHS,
                        early_stop="asha", rungs=[1], minutes=0.25, proxies=[])
    summary = run_search(settings, proposer=SmallNets(get_space("layers", input_shape=(1, 8, 8), num_classes=10)))
    assert summary.stop_reason == "time limit reached"
    rows = History(tmp_path / "home").run_candidates(summary.run_id)
    waiting = [r for r in rows if r["status"] in ("queued", "running")]
    assert waiting == []  # every candidate that reached a rung is final
    pruned = [r for r in rows if r["status"] == "pruned"]
    assert pruned and all("pruned by successive halving" in r["error"] or "cancelled" in r["error"] for r in pruned)


def test_bad_early_stop_settings_are_refused_before_anything_is_recorded(tmp_path, tiny_tables):
    with pytest.raises(UserInputError, match="--rungs 2 is given but early stopping is off"):
        small_search(tmp_path / "home", budget=2, epochs=4, rungs=[2])
    with pytest.raises(UserInputError, match=r"rungs \[9\] are not between 1 and 3"):
        small_search(tmp_path / "home", budget=2, epochs=4, early_stop="asha", rungs=[9])
    with pytest.raises(UserInputError, match="needs a task that trains"):
        run_search(Settings(home=tmp_path / "home", task="nb201-cifar10", benchmark_dir=tiny_tables, budget=3,
                            early_stop="asha"))
    assert History(tmp_path / "home").list_runs() == []
    out = run_cli("search", "--task", "digits", "--early-stop", "asha", "--rungs", "two", home=tmp_path / "home")
    assert out.returncode == 2 and "comma-separated integers" in out.stderr


def curves_search(tmp_path, n_cells: int = 30, epochs: int = 10, **kw):
    path = tmp_path / "curves.csv"
    if not path.exists():
        write_curves(path, cells(n_cells), epochs=epochs)
    settings = Settings(home=tmp_path / "home", task=f"curves:{path}", **kw)
    return run_search(settings), History(tmp_path / "home")


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 3])
def test_on_replayed_curves_every_candidate_ends_and_the_rungs_add_up(tmp_path, workers):
    summary, h = curves_search(tmp_path, budget=18, early_stop="asha", workers=workers, proposer="random")
    rows = h.run_candidates(summary.run_id)
    assert summary.evaluations == 18 and {r["status"] for r in rows} == {"ok", "pruned"}
    rungs = summary.asha["rungs"]
    assert [r["epochs"] for r in rungs] == [1, 3] and rungs[0]["reached"] == 18
    assert rungs[1]["reached"] == rungs[0]["promoted"] and summary.counts["ok"] == rungs[1]["promoted"] >= 1
    assert summary.counts["pruned"] == summary.asha["pruned"] == 18 - summary.counts["ok"]
    lengths = {r["candidate_id"]: len(h.get_candidate(r["candidate_id"])["evaluations"][0]["curve"]) for r in rows}
    assert sorted(set(lengths.values())) == [1, 3, 10]
    assert summary.epochs_trained == sum(lengths.values()) and summary.epochs_saved == 18 * 10 - summary.epochs_trained
    # the best of all 18 by its final value trained to the end (the synthetic curves keep their order)
    assert summary.best.candidate_id == max(rows, key=lambda r: r["val_accuracy"] or 0)["candidate_id"]


@pytest.mark.slow
def test_a_space_smaller_than_the_budget_closes_the_rungs_instead_of_waiting_forever(tmp_path):
    summary, h = curves_search(tmp_path, n_cells=5, budget=8, early_stop="asha", proposer="evolution", population=2,
                               tournament=1)
    assert summary.stop_reason.startswith("proposal limit reached") and summary.evaluations == 5
    assert {r["status"] for r in h.run_candidates(summary.run_id)} <= {"ok", "pruned"} and summary.counts["ok"] >= 1


@pytest.mark.slow
def test_both_forecasts_inside_the_rungs_and_records_every_forecast(tmp_path):
    summary, h = curves_search(tmp_path, budget=20, epochs=20, early_stop="both", rungs=[2, 6], proposer="random")
    assert summary.evaluations == 20 and summary.early_stop["mode"] == "forecast" and summary.asha["eta"] == 3
    forecasts = h.forecasts(summary.run_id)
    assert len(forecasts) == summary.early_stop["forecasts"] > 0
    assert {r["status"] for r in h.run_candidates(summary.run_id)} <= {"ok", "pruned", "stopped_early"}
    assert summary.epochs_trained + summary.epochs_saved == 20 * 20


@pytest.mark.slow
def test_auto_halves_the_guided_portfolio_only(tmp_path):
    """``--early-stop auto`` (the default): successive halving for the surrogate-guided portfolio on
    a training task, off for a baseline and with --surrogate off; the run records the mode used."""
    assert Settings().early_stop == "auto"
    summary, h = curves_search(tmp_path, budget=12, workers=2)
    assert summary.asha is not None and summary.asha["rungs"][0]["reached"] == 12
    assert h.get_run(summary.run_id)["config"]["early_stop"] == "asha"  # auto, resolved
    assert {r["status"] for r in h.run_candidates(summary.run_id)} == {"ok", "pruned"}
    assert summary.counts["pruned"] >= 6 and summary.best.candidate_id is not None
    for kw in ({"proposer": "random"}, {"surrogate": "off"}):
        run, h = curves_search(tmp_path, budget=6, **kw)
        assert run.asha is None and run.counts["pruned"] == 0 and h.get_run(run.run_id)["config"]["early_stop"] == "off"
    with pytest.raises(UserInputError, match=r"early stopping is off \(--early-stop auto"):
        curves_search(tmp_path, budget=6, proposer="evolution", rungs=[2])
    # a schedule too short for any rung (2 epochs, eta 3) trains without halving instead of failing
    (tmp_path / "short").mkdir()
    short, h = curves_search(tmp_path / "short", n_cells=8, epochs=2, budget=4)
    assert short.asha is None and h.get_run(short.run_id)["config"]["early_stop"] == "off"
