"""Proposals made while the pool trains (agent.engine.proposing): overlap, the budget, no
duplicates, the pending candidates shown to the proposer, stops while a proposal is made.

The pools are real: recorded learning curves replayed on the wall clock (``CurvePool(realtime=
True)``, whose jobs progress between calls as training does, in tens of milliseconds), and one
digits search with real training. The slow proposer is a real Proposer that wraps another one and
waits before each proposal, as an LLM does; it logs every call with the thread it ran on, its
monotonic interval and the context it was given. Facts asserted are overlaps and orders, never
speeds.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import ClassVar

import pytest

from agent.config import Settings
from agent.engine import runner
from agent.engine.resume import resume_settings
from agent.engine.runner import run_search
from agent.llm.openai_backend import OpenAIBackend
from agent.prompting import HistoryView
from agent.proposers import Proposal, ProposalContext, Proposer
from agent.proposers.llm import LLMProposer
from agent.proposers.random_search import RandomSearch
from agent.store import History
from agent.store.recorder import MemoryRecorder
from evaluator.pools.replay import CurvePool
from evaluator.tables.curves import load_curve_table
from evaluator.pools.base import PoolEvent
from evaluator.records import Candidate, Evaluation, Status
from evaluator.spaces import get_space
from evaluator.spaces.nb201 import Nb201Space, parse_arch
from tests.agent.test_early_stop import SmallNets
from tests.agent.test_llm_openai import completion, serve  # noqa: F401 - the fixture
from tests.evaluator.test_curves import cells, write_curves

EPOCHS = 5
SECONDS_PER_EPOCH = 0.02  # a replayed job takes 0.1 s of wall time


class Slow(Proposer):
    """``inner``'s proposals, each call ``delay`` seconds late (or held until ``gate`` opens, for
    calls after the first ``free`` ones). Logs calls and observations (thread, interval, context)."""

    name: ClassVar[str] = "slow"

    def __init__(self, inner: Proposer, delay: float = 0.0, *, pools: list | None = None,
                 repeat_pending: bool = False, gate: threading.Event | None = None, free: int = 1) -> None:
        super().__init__(inner.space, 0)
        self.inner, self.delay, self.pools, self.repeat_pending = inner, delay, pools, repeat_pending
        self.gate, self.free = gate, free
        self.held = threading.Event()  # a call is waiting at the gate
        self.calls: list[dict] = []
        self.observed: list[dict] = []
        self.thread: threading.Thread | None = None

    def propose(self, n: int, context: ProposalContext) -> list[Proposal]:
        start, self.thread = time.monotonic(), threading.current_thread()
        in_flight = self.pools[-1].in_flight if self.pools else None
        call = {"start": start, "thread": self.thread.name, "in_flight": in_flight, "n": n, "context": context}
        if self.gate is not None and len(self.calls) >= self.free:
            self.calls.append(call)
            self.held.set()
            call["released"] = self.gate.wait(timeout=60)
        else:
            time.sleep(self.delay)
            self.calls.append(call)
        out = self.inner.propose(n, context)
        if self.repeat_pending and context.pending and len(self.calls) % 2 == 0:
            out = [Proposal(spec=context.pending[-1][1], rationale="repeats a candidate under way")]
        call["end"] = time.monotonic()
        return out

    def observe(self, candidate: Candidate, evaluation: Evaluation) -> None:
        start = time.monotonic()
        self.inner.observe(candidate, evaluation)
        self.observed.append({"start": start, "end": time.monotonic(), "thread": threading.current_thread().name})


@pytest.fixture
def replays(tmp_path, monkeypatch):
    """A curves file, and searches of it whose pool replays in real time (``pool_class`` may
    replace CurvePool); the pools the searches used are listed as they are made."""
    path = tmp_path / "curves.csv"
    write_curves(path, cells(60), epochs=EPOCHS)
    pools: list[CurvePool] = []
    real = runner.prepare
    options = {"pool_class": CurvePool, "realtime": True}

    def prepare(settings, run_id, test_inject=None):
        setup = real(settings, run_id, test_inject)
        if isinstance(setup.pool, CurvePool):
            setup.pool = options["pool_class"](setup.pool.table, capacity=setup.pool.capacity,
                                               seconds_per_epoch=SECONDS_PER_EPOCH, realtime=options["realtime"])
        pools.append(setup.pool)
        return setup

    monkeypatch.setattr(runner, "prepare", prepare)
    space = Nb201Space(cells=frozenset(load_curve_table(path).archs))
    return path, pools, space, options


def settings(path: Path, home: Path, **kw) -> Settings:
    return Settings(home=home, task=f"curves:{path}", **({"budget": 10, "workers": 2} | kw))


def serialized(proposer: Slow) -> bool:
    """No two of the proposer's calls (propose or observe) ran at once."""
    spans = sorted([(c["start"], c["end"]) for c in proposer.calls] + [(o["start"], o["end"]) for o in proposer.observed])
    return all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:]))


@pytest.mark.parametrize("workers", [1, 2])
def test_proposals_are_made_while_the_pool_trains_within_the_budget(replays, tmp_path, workers):
    path, pools, space, _ = replays
    proposer = Slow(RandomSearch(space, 0), delay=0.03, pools=pools)
    events: list[tuple[float, str]] = []
    summary = run_search(settings(path, tmp_path / "home", workers=workers, budget=10), proposer=proposer,
                         on_event=lambda e: events.append((time.monotonic(), e.kind)))
    assert summary.status == "done" and summary.stop_reason == "budget reached" and summary.evaluations == 10
    rows = History(tmp_path / "home").run_candidates(summary.run_id)
    evaluated = [r for r in rows if r["status"] != "invalid"]
    assert len(evaluated) == 10 and {r["status"] for r in rows} == {"ok"}
    assert len({r["canonical_key"] for r in evaluated}) == 10  # no key evaluated twice

    # every call to the proposer ran on the proposal thread, one at a time
    assert {c["thread"] for c in proposer.calls + proposer.observed} == {"proposer"}
    assert serialized(proposer) and len(proposer.observed) == 10
    # the pool trained while the proposer worked: a job was in flight as a proposal began, and the
    # coordinator took the pool's epochs and results while a proposal was being made
    assert any(c["in_flight"] > 0 for c in proposer.calls)
    assert any(c["start"] < t < c["end"] for c in proposer.calls for t, kind in events if kind in ("progress", "finished"))
    if workers == 1:  # the lookahead: the next candidate was made while the only slot was busy
        assert any(c["in_flight"] == 1 and len(c["context"].pending) == 1 for c in proposer.calls)

    # the budget counts what is under way: no request went beyond it, and at most a pool's worth waited
    for c in proposer.calls:
        ctx = c["context"]
        assert ctx.evaluations + len(ctx.pending) + c["n"] <= 10
        assert len(ctx.pending) + c["n"] <= 2 * workers
    # the pending candidates reached the proposer: recorded candidates, their keys in ``seen``
    pending = [p for c in proposer.calls for p in c["context"].pending]
    assert pending and {cid for cid, _ in pending} <= {r["candidate_id"] for r in rows}
    assert all(space.canonical_key(spec) in c["context"].seen for c in proposer.calls for _, spec in c["context"].pending)


def test_a_repeat_of_a_candidate_under_way_is_a_duplicate_and_costs_nothing(replays, tmp_path):
    path, pools, space, _ = replays
    proposer = Slow(RandomSearch(space, 1), delay=0.01, pools=pools, repeat_pending=True)
    summary = run_search(settings(path, tmp_path / "home", budget=8), proposer=proposer)
    assert summary.evaluations == 8 and summary.duplicates_skipped >= 1
    assert summary.proposals == summary.evaluations + summary.duplicates_skipped
    rows = History(tmp_path / "home").run_candidates(summary.run_id)
    assert len(rows) == 8 and len({r["canonical_key"] for r in rows}) == 8


@pytest.mark.slow
def test_a_replay_in_virtual_time_proposes_inline_and_stays_reproducible(replays, tmp_path):
    path, pools, space, options = replays
    options["realtime"] = False

    def keys(home):
        proposer = Slow(RandomSearch(space, 5))
        summary = run_search(settings(path, home, proposer="evolution", budget=12), proposer=proposer)
        assert {c["thread"] for c in proposer.calls + proposer.observed} == {"MainThread"}
        assert all(len(c["context"].pending) + c["n"] <= 2 for c in proposer.calls)  # no lookahead
        return [r["canonical_key"] for r in History(home).run_candidates(summary.run_id)]

    assert keys(tmp_path / "a") == keys(tmp_path / "b")
    assert all(not p.background for p in pools)


def test_a_resumed_run_holding_more_queued_candidates_than_budget_left_evaluates_only_its_budget(replays, tmp_path):
    """Queued candidates (in flight when a process died, or a chat approval cut short) count against
    the budget too: a resume with room for one, and two free slots, evaluates one and ends the other
    invalid at once, so the finished run holds final candidates only."""
    path, _, space, options = replays
    options["realtime"] = False
    home = tmp_path / "home"
    summary = run_search(settings(path, home, budget=3, proposer="random", seed=2))
    h = History(home)
    seen = {r["canonical_key"] for r in h.run_candidates(summary.run_id)}
    fresh = [c for c in load_curve_table(path).archs if c not in seen][:2]
    h.add_candidates([Candidate(candidate_id=f"{summary.run_id}-c{3 + i:04d}", run_id=summary.run_id, seq=3 + i,
                                space="nb201", spec=space.validate(c), canonical_key=c, proposer="chat",
                                status=Status.QUEUED) for i, c in enumerate(fresh)])
    again = run_search(resume_settings(Settings(home=home), {"budget": 4}, h.get_run(summary.run_id)["config"]),
                       resume=summary.run_id)
    assert again.evaluations == 4 == again.budget and again.counts["invalid"] == 1
    statuses = {r["candidate_id"][-5:]: (r["status"], r["error"]) for r in h.run_candidates(summary.run_id)}
    assert statuses["c0003"] == ("ok", None)
    assert statuses["c0004"] == ("invalid", "not evaluated: the run's budget (4 evaluations) had no room left for it "
                                            "when the run was resumed")


def test_a_search_stopped_by_its_time_limit_ends_the_queued_candidates_it_did_not_start(replays, tmp_path):
    path, _, space, _ = replays
    home = tmp_path / "home"
    summary = run_search(settings(path, home, budget=1, workers=1, proposer="random", seed=3))
    h = History(home)
    seen = {r["canonical_key"] for r in h.run_candidates(summary.run_id)}
    fresh = [c for c in load_curve_table(path).archs if c not in seen][:3]
    h.add_candidates([Candidate(candidate_id=f"{summary.run_id}-c{1 + i:04d}", run_id=summary.run_id, seq=1 + i,
                                space="nb201", spec=space.validate(c), canonical_key=c, proposer="chat",
                                status=Status.QUEUED) for i, c in enumerate(fresh)])
    # one slot, 0.1 s a job: the time limit (0.12 s) comes before the third queued candidate gets the slot
    again = run_search(resume_settings(Settings(home=home), {"budget": 10, "minutes": 0.002},
                                       h.get_run(summary.run_id)["config"]), resume=summary.run_id)
    assert again.status == "done" and again.stop_reason == "time limit reached"
    rows = {r["candidate_id"][-5:]: r for r in h.run_candidates(summary.run_id)}
    assert all(r["status"] not in ("queued", "running") for r in rows.values())
    left = [k for k in ("c0001", "c0002", "c0003") if rows[k]["status"] == "invalid"]
    assert "c0003" in left and all(rows[k]["error"] == "not evaluated: the search stopped (time limit reached) before "
                                                      "it got a pool slot" for k in left)
    assert again.evaluations == sum(r["status"] != "invalid" for r in rows.values())


class Failing(Slow):
    def propose(self, n: int, context: ProposalContext) -> list[Proposal]:
        if self.calls:
            raise RuntimeError("the proposer broke")
        return super().propose(n, context)


def test_an_error_in_the_proposal_thread_fails_the_run_in_the_main_thread(replays, tmp_path):
    path, pools, space, _ = replays
    with pytest.raises(RuntimeError, match="the proposer broke"):
        run_search(settings(path, tmp_path / "home"), proposer=Failing(RandomSearch(space, 0)))
    (run,) = History(tmp_path / "home").list_runs()
    assert run["status"] == "failed"


class FailsAtLastObservation(Slow):
    """Its observation of the run's last outcome fails, after the graph took its last batch."""

    def __init__(self, inner: Proposer, budget: int) -> None:
        super().__init__(inner)
        self.budget = budget

    def observe(self, candidate: Candidate, evaluation: Evaluation) -> None:
        super().observe(candidate, evaluation)
        if len(self.observed) == self.budget:
            raise RuntimeError("the history write of the last observation failed")


def test_an_error_of_the_proposal_thread_after_its_last_batch_still_fails_the_run(replays, tmp_path):
    """It used to be raised only by a next take(), which never came: the run was "done" and the
    error lost."""
    path, pools, space, _ = replays
    proposer = FailsAtLastObservation(RandomSearch(space, 0), budget=6)
    with pytest.raises(RuntimeError, match="the history write of the last observation failed"):
        run_search(settings(path, tmp_path / "home", budget=6), proposer=proposer)
    assert proposer.thread is not None and proposer.thread.name == "proposer"  # it ran in the thread
    (run,) = History(tmp_path / "home").list_runs()
    assert run["status"] == "failed"


EXITS_IN_A_WRITE = """
import sys, threading, time
from pathlib import Path
from agent.store import History

h = History(Path(sys.argv[1]))
h.schema_version()
inside = threading.Event()

def write():
    with h._transaction() as con:
        con.execute("INSERT INTO meta VALUES ('late', 'kept')")
        inside.set()
        time.sleep(1.0)  # the main thread ends meanwhile

threading.Thread(target=write, daemon=True).start()
inside.wait(30)
"""


def test_a_process_ending_while_a_thread_writes_the_history_lets_the_write_finish(tmp_path):
    """Python stops daemon threads where they stand at exit: the proposal thread's write (a
    reflection, an LLM call's record) was lost mid-transaction."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    History(tmp_path)._ensure_schema()
    out = subprocess.run([sys.executable, "-c", EXITS_IN_A_WRITE, str(tmp_path)], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert History(tmp_path).query("SELECT value FROM meta WHERE key = 'late'")[1] == [("kept",)]


class Lossy(CurvePool):
    """A replay that loses each job's worker once, as a Ray pool reports: a ``lost`` event (the job
    is queued again and goes on) before the job's first epoch."""

    def events(self, timeout=None):
        out = []
        for e in super().events(timeout):
            if e.kind == "progress" and e.data["epoch"] == 1:
                out.append(PoolEvent(kind="lost", candidate_id=e.candidate_id, data={"reason": "worker died"}))
            out.append(e)
        return out


def test_events_of_other_kinds_are_passed_on_and_change_nothing(replays, tmp_path):
    path, pools, space, options = replays
    options["pool_class"] = Lossy
    kinds: list[str] = []
    summary = run_search(settings(path, tmp_path / "home", budget=6), proposer=Slow(RandomSearch(space, 2)),
                         on_event=lambda e: kinds.append(e.kind))
    assert summary.evaluations == 6 and summary.counts["ok"] == 6
    assert kinds.count("lost") == 6 and kinds.count("finished") == 6 + 1  # and the final report's


def test_a_stop_does_not_wait_for_the_proposal_being_made_nor_record_it(replays, tmp_path):
    """Ctrl-C (or SIGTERM, raised the same way in the main thread) while the proposer is busy."""
    path, pools, space, _ = replays
    gate = threading.Event()
    proposer = Slow(RandomSearch(space, 3), pools=pools, gate=gate, free=1)

    def interrupt(event: PoolEvent) -> None:
        if event.kind == "finished":
            assert proposer.held.wait(timeout=30)  # the next proposal is being made
            raise KeyboardInterrupt

    home = tmp_path / "home"
    with pytest.raises(KeyboardInterrupt):
        run_search(settings(path, home, workers=1, budget=10), proposer=proposer, on_event=interrupt)
    assert not gate.is_set() and len(proposer.calls) == 2 and "end" not in proposer.calls[1]  # still being made
    h = History(home)
    (run,) = h.list_runs()
    assert run["status"] == "interrupted"
    before = h.run_candidates(run["run_id"])
    assert [c["status"] for c in before] == ["queued"]  # it was in the pool: the run's resume evaluates it
    gate.set()  # the proposal is made after the stop: it is dropped
    proposer.thread.join(timeout=30)
    assert not proposer.thread.is_alive() and proposer.calls[1]["released"]
    assert h.run_candidates(run["run_id"]) == before


def test_a_time_limit_abandons_the_proposal_being_made(replays, tmp_path):
    path, pools, space, _ = replays
    gate = threading.Event()
    proposer = Slow(RandomSearch(space, 4), pools=pools, gate=gate, free=1)
    try:
        summary = run_search(settings(path, tmp_path / "home", workers=1, budget=10, minutes=0.02), proposer=proposer)
        assert summary.status == "done" and summary.stop_reason == "time limit reached"
        # the search ended while its second proposal was still being made, and recorded only the first
        assert proposer.held.is_set() and not gate.is_set() and "end" not in proposer.calls[1]
        rows = History(tmp_path / "home").run_candidates(summary.run_id)
        assert summary.evaluations == 1 and [r["status"] in ("ok", "pruned") for r in rows] == [True]
    finally:
        gate.set()


# -- the LLM's prompt ----------------------------------------------------------------------

def model(cells_in_order: list[str], delay: float = 0.0):
    """A scripted endpoint: each proposal request gets the next cell (slowly); reflection gets insights."""
    queue = list(cells_in_order)

    def answer(body):
        if body["response_format"]["json_schema"]["name"] == "Insights":
            content = {"insights": ["convolutions beat pooling"]}
        else:
            content = {"rationale": "scripted", "spec": parse_arch(queue.pop(0))}
        return 200, completion(json.dumps(content)), {}, delay

    return answer


HEADING = "## Being evaluated now — do not propose these again"


def test_the_llm_prompt_lists_the_candidates_being_evaluated(serve):
    nb201 = get_space("nb201")
    archs = cells(4)
    server = serve(model([archs[0], archs[2], archs[3]]))
    task = {"task": "t", "task_description": "d", "objectives": ["maximise validation accuracy"]}
    proposer = LLMProposer(nb201, 0, backend=OpenAIBackend("m", base_url=server.url, timeout=5), run_id="r1",
                           history=lambda c: HistoryView(evaluations=c.evaluations, budget=c.budget),
                           record=MemoryRecorder().add_llm_calls, task=task)
    pending = (("r1-c0007", parse_arch(archs[0])), ("r1-c0008", parse_arch(archs[1])))
    (p,) = proposer.propose(1, ProposalContext(seen=frozenset(archs[:2]), evaluations=5, budget=10, pending=pending))
    assert nb201.canonical_key(nb201.validate(p.spec)) == archs[2]  # the repeat of r1-c0007 was repaired
    first, repair = (r["body"]["messages"] for r in server.requests)
    prompt = first[-1]["content"]
    assert HEADING in prompt and f"- r1-c0007 | {archs[0]}" in prompt and f"- r1-c0008 | {archs[1]}" in prompt
    assert "duplicate: this candidate is being evaluated in this run" in repair[-1]["content"]
    proposer.propose(1, ProposalContext(seen=frozenset(archs[:3]), evaluations=6, budget=10))
    assert HEADING not in server.requests[-1]["body"]["messages"][-1]["content"]  # nothing under way: no heading


@pytest.mark.slow
def test_a_search_with_a_slow_llm_shows_it_the_candidates_in_the_pool(serve, replays, tmp_path):
    path, pools, space, _ = replays
    server = serve(model(load_curve_table(path).archs, delay=0.05))
    home = tmp_path / "home"
    summary = run_search(settings(path, home, workers=2, budget=8, proposer="llm", llm="openai", model="m",
                                  openai_base_url=server.url, openai_api_key="sk-test", reflect_every=3))
    assert summary.status == "done" and summary.evaluations == 8
    h = History(home)
    rows = h.run_candidates(summary.run_id)
    assert len(rows) == 8 and len({r["canonical_key"] for r in rows}) == 8
    prompts = [c["messages"][-1]["content"] for c in h.llm_calls(summary.run_id) if c["template"] == "propose.j2"]
    listed = [p for p in prompts if HEADING in p]
    assert listed and all(any(f"- {r['candidate_id']} | " in p for r in rows) for p in listed)
    assert [c["outcome"] for c in h.llm_calls(summary.run_id) if c["template"] == "reflect.j2"]  # on the same thread
    assert summary.llm["calls"] == len(h.llm_calls(summary.run_id))


# -- real training -------------------------------------------------------------------------

@pytest.mark.slow
def test_a_digits_search_trains_while_the_proposer_works(tmp_path, monkeypatch):
    pools: list = []
    real = runner.prepare

    def prepare(*args, **kwargs):
        setup = real(*args, **kwargs)
        pools.append(setup.pool)  # the real training pool, for the proposer to look at
        return setup

    monkeypatch.setattr(runner, "prepare", prepare)
    proposer = Slow(SmallNets(get_space("layers", input_shape=(1, 8, 8), num_classes=10)), delay=1.0, pools=pools)
    summary = run_search(Settings(home=tmp_path / "home", task="digits", final_seeds=1, device="cpu", budget=3,
                                  workers=1, epochs=1, proxies=[]), proposer=proposer)
    assert summary.status == "done" and summary.evaluations == 3 and summary.counts["ok"] == 3
    assert {c["thread"] for c in proposer.calls} == {"proposer"} and serialized(proposer)
    # a training process ran while a proposal was made: the one slot was busy as it began
    assert any(c["in_flight"] == 1 for c in proposer.calls)
    for c in proposer.calls:
        assert c["context"].evaluations + len(c["context"].pending) + c["n"] <= 3
    assert any(c["context"].pending for c in proposer.calls)
