"""The search graph end to end on tabular tasks: budget, duplicates, invalid input, limits."""

from __future__ import annotations

from typing import ClassVar

import pytest

from agent.config import Settings
from agent.proposers import Proposal, ProposalContext, Proposer
from agent.engine.runner import run_search
from agent.store import History
from agent.store.recorder import MemoryRecorder
from agent.records import RunStatus
from evaluator.records import FINAL_STATUSES, Status
from evaluator.spaces import get_space
from tests.conftest import all_archs, write_tiny_tables

SPACE = get_space("nb201")


def settings(tables, **kw) -> Settings:
    return Settings(task="nb201-cifar10", benchmark_dir=tables, **({"budget": 30} | kw))


class Scripted(Proposer):
    """A proposer that replays a fixed list of raw proposals (stands in for untrusted LLM output)."""

    name: ClassVar[str] = "scripted"

    def __init__(self, specs):
        super().__init__(SPACE, 0)
        self.specs = list(specs)

    def propose(self, n: int, context: ProposalContext) -> list[Proposal]:
        out, self.specs = self.specs[:n], self.specs[n:]
        return [Proposal(spec=s) for s in out]


@pytest.mark.parametrize("proposer", ["random", "evolution"])
def test_budget_counts_evaluations_and_duplicates_are_never_evaluated(tiny_tables, proposer):
    rec = MemoryRecorder()
    summary = run_search(settings(tiny_tables, proposer=proposer, budget=60, population=10, tournament=3), recorder=rec)
    evaluated = [c for c in rec.candidates.values() if c.status.counts_against_budget]
    assert summary.evaluations == 60 == len(evaluated) == summary.counts["ok"]
    keys = [c.canonical_key for c in evaluated]
    assert len(set(keys)) == len(keys)
    assert summary.proposals == summary.evaluations + summary.duplicates_skipped
    assert len([e for e in rec.events if e["kind"] == "duplicate_skipped"]) == summary.duplicates_skipped
    assert set(summary.counts) == {s.value for s in FINAL_STATUSES}
    assert summary.stop_reason == "budget reached"
    # the answer is the best by validation, reported on the final table
    search_evals = {e.candidate_id: e for e in rec.evaluations if e.purpose.value == "search"}
    best_id = max(search_evals, key=lambda cid: (search_evals[cid].val_accuracy, -rec.candidates[cid].seq))
    assert summary.best.candidate_id == best_id
    assert summary.best.arch == rec.candidates[best_id].canonical_key
    assert summary.best.test_accuracy is not None and "200-epoch" in summary.best.test_source
    assert all(e.test_accuracy is None for e in search_evals.values())  # search never reads test


def test_same_seed_same_search_and_budget_does_not_change_the_trajectory(tiny_tables):
    def keys(budget, seed):
        rec = MemoryRecorder()
        run_search(settings(tiny_tables, proposer="evolution", budget=budget, seed=seed, population=8, tournament=3), recorder=rec)
        return [c.canonical_key for c in sorted(rec.candidates.values(), key=lambda c: c.seq)]

    assert keys(40, 3) == keys(40, 3)
    assert keys(20, 3) == keys(40, 3)[:20]
    assert keys(40, 3) != keys(40, 4)


def test_invalid_and_duplicate_proposals_are_recorded_not_counted(tiny_tables):
    cells = all_archs()
    script = [cells[0], {"edge_1_0": "conv9x9"}, cells[0], "not an arch", 42, cells[1], cells[2]]
    summary = run_search(settings(tiny_tables, budget=3, home=tiny_tables.parent / "home"), proposer=Scripted(script))
    assert summary.evaluations == 3
    assert summary.counts["invalid"] == 3 and summary.counts["ok"] == 3
    assert summary.duplicates_skipped == 1
    rows = History(tiny_tables.parent / "home").run_candidates(summary.run_id)
    invalid = [r for r in rows if r["status"] == "invalid"]
    assert len(invalid) == 3
    assert any("edge_1_0" in r["error"] and "conv9x9" in r["error"] for r in invalid)
    assert any("must be a JSON object" in r["error"] for r in invalid)
    assert {r["canonical_key"] for r in rows if r["status"] == "ok"} == set(cells[:3])
    assert all(r["status"] in {"ok", "invalid"} for r in rows)


def test_a_proposer_stuck_on_duplicates_stops_at_the_proposal_limit(tiny_tables):
    cells = all_archs()
    summary = run_search(settings(tiny_tables, budget=2), recorder=MemoryRecorder(), proposer=Scripted([cells[5]] * 1000))
    assert summary.evaluations == 1
    assert summary.stop_reason.startswith("proposal limit reached")
    assert summary.proposals == 20 * 2 + 100


def test_wall_clock_limit_stops_the_search_cleanly(tiny_tables):
    summary = run_search(settings(tiny_tables, budget=5000, minutes=1e-5), recorder=MemoryRecorder())
    assert summary.status == "done" and summary.stop_reason == "time limit reached"
    assert 1 <= summary.evaluations < 5000


def test_cells_missing_from_a_partial_table_fail_and_count(tmp_path):
    cells = all_archs()
    tables = write_tiny_tables(tmp_path / "t", cells[:10], final=False)
    summary = run_search(settings(tables, budget=12), recorder=MemoryRecorder(), proposer=Scripted(cells[5:17]))
    assert summary.counts["ok"] == 5 and summary.counts["failed"] == 7 and summary.evaluations == 12
    assert any("holds 10 of 15625 cells" in w for w in summary.warnings)
    assert summary.best.arch in cells[5:10]
    assert "12-epoch test accuracy" in summary.best.test_source and "no 200-epoch table" in summary.best.test_source


class Exploding(Scripted):
    def __init__(self, exc):
        super().__init__([])
        self.exc = exc

    def propose(self, n, context):
        raise self.exc


@pytest.mark.parametrize("exc, status", [(KeyboardInterrupt(), RunStatus.INTERRUPTED), (RuntimeError("boom"), RunStatus.FAILED)])
def test_run_status_when_a_search_is_interrupted_or_fails(tiny_tables, exc, status):
    rec = MemoryRecorder()
    with pytest.raises(type(exc)):
        run_search(settings(tiny_tables), recorder=rec, proposer=Exploding(exc))
    (run,) = rec.runs.values()
    assert run.status is status


@pytest.mark.slow
def test_history_records_the_whole_run(tiny_tables, tmp_path):
    home = tmp_path / "home"
    summary = run_search(settings(tiny_tables, budget=10, home=home))
    h = History(home)
    run = h.get_run(summary.run_id)
    assert run["status"] == "done" and run["evaluations"] == 10
    assert run["summary"]["best"]["candidate_id"] == summary.best.candidate_id
    assert run["best_val_accuracy"] == pytest.approx(summary.best.val_accuracy)
    rows = h.run_candidates(summary.run_id)
    assert [r["seq"] for r in rows] == list(range(10))
    assert all(r["status"] == Status.OK.value for r in rows)
    best = h.get_candidate(summary.best.candidate_id)
    assert [e["purpose"] for e in best["evaluations"]] == ["search", "final"]


@pytest.mark.slow
def test_the_history_does_not_change_the_search(tiny_tables, tmp_path):
    """bench/ runs searches with the in-memory recorder; they must equal `agent search`'s."""
    s = settings(tiny_tables, proposer="evolution", budget=25, seed=5, population=6, tournament=2, home=tmp_path / "h")
    in_memory, recorded = run_search(s, recorder=MemoryRecorder()), run_search(s)
    assert in_memory.best.arch == recorded.best.arch and in_memory.best.test_accuracy == recorded.best.test_accuracy
    keys = [r["canonical_key"] for r in History(tmp_path / "h").run_candidates(recorded.run_id)]
    rec = MemoryRecorder()
    run_search(s, recorder=rec)
    assert keys == [c.canonical_key for c in sorted(rec.candidates.values(), key=lambda c: c.seq)]


def test_a_run_recorded_in_memory_resumes_from_it_as_from_the_history(tiny_tables, tmp_path):
    """Both recorders implement the whole Recorder protocol: a run stopped at 6 evaluations and
    resumed to 10 gives the same candidates whether it lives in memory or in the history."""
    first = settings(tiny_tables, budget=6, seed=3, proposer="evolution", home=tmp_path / "home")
    memory, history = MemoryRecorder(), History(tmp_path / "home")
    runs = {}
    for name, recorder in (("memory", memory), ("history", history)):
        started = run_search(first, recorder=recorder)
        resumed = run_search(first.model_copy(update={"budget": 10}), recorder=recorder, resume=started.run_id)
        assert resumed.run_id == started.run_id and resumed.evaluations == 10
        assert recorder.count_events(started.run_id, "run_resumed") == 1
        candidates, _ = recorder.run_records(started.run_id)
        runs[name] = [c.canonical_key for c in candidates]
    assert runs["memory"] == runs["history"] and len(set(runs["memory"])) == 10
    assert memory.get_run(memory.resolve_run_id("latest"))["status"] == "done"
