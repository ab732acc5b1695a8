"""The proposer portfolio, reflection, directions and the LLM cost limit, end to end.

The LLM is the real openai backend talking to the scripted OpenAI-compatible server the tests
start on loopback (tests/agent/test_llm_openai.py): a test double at the remote-API boundary,
scripted here to act like a strong designer (every reply a new cell full of convolutions,
the best cells of the tiny tables) or a weak one (pooling and skips everywhere). The real
offline model drives the portfolio in tests/agent/test_llm_local.py.
"""

from __future__ import annotations

import itertools
import json
import random
import re

import pytest

from agent.api import history
from agent.config import Settings
from agent.engine.runner import run_search
from agent.proposers import Portfolio, ProposalContext, make_proposer
from agent.proposers.portfolio import _Pending
from agent.store import History
from agent.store.recorder import MemoryRecorder
from evaluator.errors import UserInputError
from evaluator.records import Candidate, Evaluation, Status
from evaluator.spaces import get_space
from evaluator.spaces.nb201 import EDGE_FIELDS
from tests.agent.test_llm_openai import completion, serve  # noqa: F401 - the fixture

NB201 = get_space("nb201")


def cells(ops: tuple[str, ...], seed: int) -> list[dict]:
    """Every cell over ``ops``, in a seeded order: distinct replies for a scripted model."""
    out = [dict(zip(EDGE_FIELDS, combo)) for combo in itertools.product(ops, repeat=len(EDGE_FIELDS))]
    random.Random(seed).shuffle(out)
    return out


def model(proposals: list[dict], insights: list[str] | None = None):
    """A scripted endpoint: each proposal request gets the next cell; reflection gets ``insights``."""
    queue = list(proposals)

    def answer(body):
        name = body["response_format"]["json_schema"]["name"]
        if name == "Insights":
            content = {"insights": insights or ["convolutions beat pooling"]}
        else:
            content = {"rationale": "scripted", "spec": queue.pop(0)}
        return 200, completion(json.dumps(content)), {}, 0

    return answer


def llm_settings(tables, server, home, **kw) -> Settings:
    return Settings(task="nb201-cifar10", benchmark_dir=tables, home=home, llm="openai", model="m",
                    openai_base_url=server.url, openai_api_key="sk-test", **kw)


def llm_share(summary) -> float:
    ops = summary.operators["operators"]
    return sum(ops[o]["proposals"] for o in ("llm", "llm_mutation")) / summary.proposals


def llm_standing(summary) -> float:
    """The mean reward of the LLM operators: with the surrogate, how high the pool ranked their proposals."""
    ops = summary.operators["operators"]
    return sum(ops[o]["reward_sum"] for o in LLM_OPS) / max(sum(ops[o]["outcomes"] for o in LLM_OPS), 1)


LLM_OPS = ("llm", "llm_mutation")


def test_portfolio_is_the_default_with_an_llm_and_a_strong_models_proposals_rank_high_and_are_evaluated(
        serve, tiny_tables, tmp_path):
    strong = cells(("nor_conv_3x3", "nor_conv_1x1"), seed=0)  # 64 cells, the best of the tiny tables
    server = serve(model(strong))
    rec = MemoryRecorder()
    summary = run_search(llm_settings(tiny_tables, server, tmp_path, budget=40, seed=1, reflect_every=0), recorder=rec)
    assert summary.proposer == "portfolio" and summary.evaluations == 40 and summary.surrogate["pool"] > 200
    assert llm_standing(summary) > 0.65, summary.operators  # the surrogate ranks its proposals high
    assert summary.best.arch.count("conv") == 6
    assert summary.llm["calls"] >= 5 and summary.llm["valid_rate"] == 1.0
    proposers = {c.proposer for c in rec.candidates.values()}
    assert proposers <= {"portfolio:llm", "portfolio:llm_mutation", "portfolio:mutation", "portfolio:crossover",
                         "portfolio:random"}
    llm_made = [c for c in rec.candidates.values() if c.proposer.startswith("portfolio:llm")]
    assert llm_made and all(c.selection and c.selection["operator"].startswith("llm") for c in llm_made)


def test_the_llm_waits_for_llm_after_finished_candidates(serve, tiny_tables, tmp_path):
    server = serve(model(cells(("nor_conv_3x3", "nor_conv_1x1"), seed=0)))
    for llm_after, quiet in ((8, 8), (0, 3)):  # 0: right after the 3 random warm-up proposals
        rec = MemoryRecorder()
        run_search(llm_settings(tiny_tables, server, tmp_path / str(llm_after), budget=20, seed=1, reflect_every=0,
                                llm_after=llm_after, surrogate="off"), recorder=rec)
        by_seq = sorted(rec.candidates.values(), key=lambda c: c.seq)
        assert not any(c.proposer.startswith("portfolio:llm") for c in by_seq[:quiet])
        assert any(c.proposer.startswith("portfolio:llm") for c in by_seq[quiet:])
        assert by_seq[quiet - 1].proposer in ("portfolio:random", "portfolio:mutation")


def test_a_weak_model_gets_a_shrinking_share_and_no_evaluation_is_a_duplicate(serve, tiny_tables, tmp_path):
    weak = cells(("none", "avg_pool_3x3", "skip_connect"), seed=0)  # 729 cells, all at the bottom
    server = serve(model(weak))
    rec = MemoryRecorder()
    summary = run_search(llm_settings(tiny_tables, server, tmp_path, budget=60, seed=2, reflect_every=0), recorder=rec)
    assert summary.evaluations == 60 and summary.duplicates_skipped == 0
    ops = summary.operators["operators"]
    assert llm_share(summary) < 0.3, ops
    assert llm_standing(summary) < 0.65, ops
    assert ops["llm"]["mean_reward"] < ops["mutation"]["mean_reward"]
    keys = [c.canonical_key for c in rec.candidates.values() if c.status is Status.OK]
    assert len(keys) == len(set(keys)) == 60
    late = [c for c in rec.candidates.values() if c.seq >= 40]
    assert sum(c.proposer.startswith("portfolio:llm") for c in late) <= 4


def test_a_model_that_only_repeats_never_costs_an_evaluation(serve, tiny_tables, tmp_path):
    same = dict.fromkeys(EDGE_FIELDS, "nor_conv_3x3")
    server = serve(model([same] * 500))
    rec = MemoryRecorder()
    summary = run_search(llm_settings(tiny_tables, server, tmp_path, budget=25, seed=0, reflect_every=0,
                                      proposer="llm"), recorder=rec)
    keys = [c.canonical_key for c in rec.candidates.values() if c.status is Status.OK]
    assert summary.evaluations == 25 and summary.duplicates_skipped == 0 and len(set(keys)) == 25
    assert sum("repeated proposal" in (c.rationale or "") for c in rec.candidates.values()) == 24


def test_without_an_llm_the_portfolio_mixes_mutation_and_random(tiny_tables):
    rec = MemoryRecorder()
    proposer = make_proposer("portfolio", NB201, 0)
    summary = run_search(Settings(task="nb201-cifar10", benchmark_dir=tiny_tables, budget=50), recorder=rec,
                         proposer=proposer)
    ops = summary.operators["operators"]
    assert set(ops) == {"mutation", "random"} and summary.llm is None
    assert ops["mutation"]["proposals"] + ops["random"]["proposals"] == summary.proposals == 50
    assert ops["mutation"]["proposals"] > ops["random"]["proposals"]  # tiny tables reward local search
    assert all(c.parents for c in rec.candidates.values() if c.proposer == "portfolio:mutation")


def test_the_bandit_rewards_rank_and_divides_by_cost(tiny_tables):
    p = Portfolio(NB201, 0, cost="second")
    ctx = ProposalContext(seen=frozenset(), evaluations=0, budget=10)

    def finish(op: str, val: float | None, seconds: float, i: int, status=Status.OK):
        spec = NB201.sample(random.Random(i))
        key = NB201.canonical_key(spec)
        p._pending[key] = _Pending(op, 0.0, 0.0)
        cand = Candidate(candidate_id=f"r-c{i:04d}", run_id="r", seq=i, space="nb201", spec=spec, canonical_key=key,
                         proposer="portfolio", status=status)
        p.observe(cand, Evaluation(candidate_id=cand.candidate_id, status=status, val_accuracy=val,
                                   fidelity=12, wall_seconds=seconds))

    finish("random", 0.5, 1.0, 0)  # first: 0.5
    finish("random", 0.7, 1.0, 1)  # beats 1 of 1
    finish("mutation", 0.6, 1.0, 2)  # beats 1 of 2
    finish("random", None, 1.0, 3, Status.FAILED)  # 0
    assert p.arms["random"].reward_sum == pytest.approx(1.5) and p.arms["random"].outcomes == 3
    assert p.arms["mutation"].reward_sum == pytest.approx(0.5)
    finish("mutation", 0.9, 100.0, 4)
    assert p._unit_cost("mutation") > 10 * p._unit_cost("random")  # per second, mutation is now expensive
    assert p.propose(3, ctx)  # proposes without error, three distinct new cells
    assert len({NB201.canonical_key(NB201.validate(x.spec)) for x in p.propose(5, ctx)}) == 5


@pytest.mark.slow
def test_reflection_stores_insights_that_later_prompts_show_and_directions_reach_every_prompt(serve, tiny_tables, tmp_path):
    server = serve(model(cells(("nor_conv_3x3", "nor_conv_1x1", "skip_connect"), seed=3),
                         insights=["3x3 convolutions on every edge beat pooling", "skips help the last node"]))
    summary = run_search(llm_settings(tiny_tables, server, tmp_path / "home", budget=7, reflect_every=3, proposer="llm",
                                      directions=["never use avg_pool_3x3"]))
    h = History(tmp_path / "home")
    calls = h.llm_calls(summary.run_id)
    reflections = [c for c in calls if c["template"] == "reflect.j2"]
    assert [c["call_id"][-5:] for c in reflections] == ["r0003", "r0006"]
    assert all(c["proposal"] is None and c["outcome"] == "valid" for c in reflections)
    assert [i["text"] for i in h.insights(summary.run_id)] == ["3x3 convolutions on every edge beat pooling",
                                                               "skips help the last node"]
    assert len(h.insights(summary.run_id, latest=False)) == 4
    proposes = [c for c in calls if c["template"] == "propose.j2"]
    assert len(proposes) == 7
    assert all("never use avg_pool_3x3" in c["messages"][0]["content"] for c in proposes)
    shown = ["3x3 convolutions on every edge beat pooling" in c["messages"][-1]["content"] for c in proposes]
    assert shown == [False, False, False, True, True, True, True]
    assert "never use avg_pool_3x3" in reflections[0]["messages"][0]["content"]
    assert summary.llm["calls"] == 9 and summary.llm["schema_valid_rate"] == 1.0  # reflections are not proposals
    shown = history(summary.run_id, home=tmp_path / "home")["insights"]
    assert [(i["reflection"][-5:], i["text"]) for i in shown][-2:] == [("r0006", "3x3 convolutions on every edge beat pooling"),
                                                                       ("r0006", "skips help the last node")]


def test_max_llm_cost_stops_the_search_and_needs_prices(serve, tiny_tables, tmp_path):
    server = serve(model(cells(("nor_conv_3x3", "nor_conv_1x1", "skip_connect"), seed=4)))
    # each call: 11 tokens in at $1000/M and 7 out at $2000/M = $0.025
    summary = run_search(llm_settings(tiny_tables, server, tmp_path, budget=50, proposer="llm", reflect_every=0,
                                      llm_price_in=1000.0, llm_price_out=2000.0, max_llm_cost=0.1))
    assert summary.stop_reason.startswith("LLM cost limit reached") and summary.evaluations == 4
    assert summary.llm["cost"] == pytest.approx(0.1) and summary.status == "done" and summary.best is not None
    with pytest.raises(UserInputError, match="max-llm-cost") as info:
        run_search(llm_settings(tiny_tables, server, tmp_path, budget=5, max_llm_cost=1.0))
    assert "llm_price_in" in info.value.hint


@pytest.mark.llm
@pytest.mark.slow
def test_the_offline_model_reflects_and_drives_the_portfolio(tiny_tables, tmp_path):
    """The real model: its reflection parses (grammar) and is stored; the portfolio runs with it."""
    home = tmp_path / "home"
    base = dict(task="nb201-cifar10", benchmark_dir=tiny_tables, home=home, llm="local")
    summary = run_search(Settings(**base, proposer="llm", budget=3, reflect_every=2))
    h = History(home)
    (reflection,) = [c for c in h.llm_calls(summary.run_id) if c["template"] == "reflect.j2"]
    assert reflection["outcome"] == "valid" and reflection["mode"] == "grammar"
    texts = [i["text"] for i in h.insights(summary.run_id)]
    assert 1 <= len(texts) <= 4 and all(texts)
    later = [c for c in h.llm_calls(summary.run_id) if c["template"] == "propose.j2"][-1]
    assert texts[0] in later["messages"][-1]["content"]
    assert summary.llm["schema_valid_rate"] == 1.0
    summary = run_search(Settings(**base, budget=8, seed=3, reflect_every=0))
    assert summary.proposer == "portfolio" and summary.evaluations == 8 and summary.duplicates_skipped == 0
    assert sum(o["proposals"] for o in summary.operators["operators"].values()) == summary.proposals


@pytest.mark.slow
def test_cli_flags_reach_the_search(serve, tiny_tables, tmp_path):
    from tests.conftest import run_cli

    server = serve(model(cells(("nor_conv_3x3", "nor_conv_1x1", "skip_connect"), seed=5), insights=["keep convs"]))
    home = tmp_path / "home"
    out = run_cli("search", "--task", "nb201-cifar10", "--benchmark-dir", str(tiny_tables), "--llm", "openai",
                  "--model", "m", "--budget", "6", "--reflect-every", "3", "--direction", "avoid pooling",
                  "--direction", "keep it small", "--max-llm-cost", "5", "--portfolio-cost", "second",
                  "--llm-after", "3", "--surrogate", "off", "--json",
                  home=home, env={"OPENAI_BASE_URL": server.url, "OPENAI_API_KEY": "sk-test",
                                  "AGENT_LLM_PRICE_IN": "1", "AGENT_LLM_PRICE_OUT": "2"})
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["proposer"] == "portfolio" and summary["evaluations"] == 6
    assert summary["operators"]["cost"] == "second" and summary["llm"]["cost"] > 0
    run = json.loads(run_cli("history", "--run", "latest", "--json", home=home).stdout)
    assert run["summary"]["operators"] == summary["operators"]
    first = [r["body"]["messages"][0]["content"] for r in server.requests]  # system prompts and the reflect prompt
    assert first and all("avoid pooling" in m and "keep it small" in m for m in first)
    text = run_cli("history", "--run", "latest", home=home).stdout
    # the first 3 proposals are the warm-up's random samples; reflection waits for the model's first proposal
    assert re.search(r"insights of the last reflection \(after [3-5] evaluations\)", text) and "keep convs" in text
    bad = run_cli("search", "--task", "nb201-cifar10", "--benchmark-dir", str(tiny_tables), "--llm", "openai",
                  "--model", "m", "--max-llm-cost", "1", home=home, env={"OPENAI_BASE_URL": server.url})
    assert bad.returncode == 2 and "llm_price_in" in bad.stderr


def test_reflection_waits_until_the_model_has_proposed_since_the_last_one(serve):
    from agent.llm.openai_backend import OpenAIBackend
    from agent.prompting import HistoryView
    from agent.reflection import LLMSpend, Reflector

    server = serve(model([], insights=["convs first"]))
    rec, spend = MemoryRecorder(), LLMSpend()

    def record(calls):
        rec.add_llm_calls(calls)
        spend.add(calls)

    r = Reflector(backend=OpenAIBackend("m", api_key="k", base_url=server.url, timeout=5), recorder=rec, record=record,
                  spend=spend, run_id="r", history=lambda e, b: HistoryView(evaluations=e, budget=b),
                  task={"task": "nb201-cifar10", "task_description": "cells", "objectives": ["maximise accuracy"]},
                  space_name="nb201", space_description=NB201.describe(), every=5)
    assert not r.due(5)  # the model has not proposed anything yet
    spend.calls += 1  # a proposal
    assert r.due(5) and not r.due(4)
    assert r.reflect(5, 20) == ["convs first"] and [i["text"] for i in rec.insights("r")] == ["convs first"]
    assert not r.due(10)  # nothing proposed since the reflection
    spend.calls += 1
    assert r.due(10)


def test_llm_standing_is_a_share_of_the_pool():
    assert Portfolio(NB201, 0, llm_standing=0.9).llm_standing == 0.9
    with pytest.raises(ValueError, match="llm_standing"):
        Portfolio(NB201, 0, llm_standing=1.5)
