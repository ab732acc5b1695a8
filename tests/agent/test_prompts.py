"""Prompt rendering: an empty history, a large one (the token budget holds), failures, overrides."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from agent.prompting import HistoryView, Prompts, Row, estimate_tokens
from agent.store import History
from evaluator.errors import UserInputError
from agent.records import Run
from evaluator.records import Candidate, Evaluation, Status
from evaluator.spaces import get_space

NB201 = get_space("nb201")
CONTEXT = {"task": "nb201-cifar10", "task_description": "NAS-Bench-201 on CIFAR-10", "space": "nb201",
           "space_description": NB201.describe(), "objectives": ["maximise validation accuracy"]}


def history_with(tmp_path, n_ok: int, n_failed: int = 0) -> tuple[History, str]:
    h = History(tmp_path / "home")
    h.create_run(Run(run_id="r1", task="nb201-cifar10", space="nb201", proposer="llm", seed=0, budget=1000))
    rng, candidates, evaluations, seen = random.Random(0), [], [], set()
    for seq in range(n_ok + n_failed):
        spec = NB201.sample(rng)
        while NB201.canonical_key(spec) in seen:
            spec = NB201.sample(rng)
        seen.add(NB201.canonical_key(spec))
        failed = seq >= n_ok
        candidates.append(Candidate(candidate_id=f"r1-c{seq:04d}", run_id="r1", seq=seq, space="nb201", spec=spec,
                                    canonical_key=NB201.canonical_key(spec), proposer="llm", status=Status.RUNNING))
        evaluations.append(Evaluation(
            candidate_id=f"r1-c{seq:04d}", status=Status.FAILED if failed else Status.OK,
            val_accuracy=None if failed else 0.5 + seq / (10 * (n_ok + n_failed)),
            error=f"NaN or infinite training loss at epoch 3, step {seq}\n" + "x" * 1000 if failed else None))
    h.add_candidates(candidates)
    h.add_evaluations("r1", evaluations)
    return h, "r1"


def view(h: History, run_id: str, evaluations: int, **k) -> HistoryView:
    return HistoryView.from_rows(h.prompt_history(run_id, **k), NB201.canonical_key, evaluations=evaluations, budget=1000)


def test_an_empty_history():
    messages = Prompts().propose_messages(history=HistoryView(budget=30), token_budget=2000, **CONTEXT)
    assert [m["role"] for m in messages] == ["system", "user"]
    user = messages[1]["content"]
    assert "No candidates have been evaluated yet" in user and "nor_conv_3x3" in user and "0 of 30" in user


def test_a_large_history_is_cut_to_the_token_budget_best_first(tmp_path):
    h, run = history_with(tmp_path, 400)
    full = view(h, run, 400, best=50, recent=50, diverse=50, failures=5)
    assert len(full.best) == 50 and len(full.recent) == 50 and len(full.diverse) == 50
    messages = Prompts().propose_messages(history=full, token_budget=1200, **CONTEXT)
    total = sum(estimate_tokens(m["content"]) for m in messages)
    assert total <= 1200
    user = messages[1]["content"]
    assert "r1-c0399: 0.5998" in user  # the best candidate survives the cut
    assert "more evaluated candidates are not shown" in user
    roomy = Prompts().propose_messages(history=full, token_budget=100_000, **CONTEXT)[1]["content"]
    assert "not shown" not in roomy and roomy.count("\n- r1-c") == 150
    with pytest.raises(ValueError, match="too small"):
        Prompts().propose_messages(history=full, token_budget=50, **CONTEXT)


@pytest.mark.slow
def test_candidates_under_way_are_listed_and_cut_after_the_sample_and_the_recent(tmp_path):
    h, run = history_with(tmp_path, 40)
    pending = [Row(candidate_id=f"r1-c{100 + i:04d}", description=f"cell {i}", status="pending") for i in range(30)]
    full = replace(view(h, run, 40, best=10, recent=10, diverse=10), pending=pending)
    heading = "## Being evaluated now — do not propose these again"
    roomy = Prompts().propose_messages(history=full, token_budget=100_000, **CONTEXT)[1]["content"]
    assert heading in roomy and roomy.count("| cell ") == 30 and "not shown" not in roomy
    assert heading not in Prompts().propose_messages(history=replace(full, pending=[]), token_budget=100_000,
                                                     **CONTEXT)[1]["content"]
    for budget in range(3000, 300, -20):  # the first budget that cuts a pending row
        user = Prompts().propose_messages(history=full, token_budget=budget, **CONTEXT)[1]["content"]
        if "more are being evaluated and not shown" in user:
            break
    assert "more are being evaluated and not shown" in user
    assert "Most recent:" not in user and "A sample of other" not in user  # those went first
    assert "Best so far" in user and heading in user and 0 < user.count("| cell ") < 30


def test_failures_are_shown_with_their_error_cut_short(tmp_path):
    h, run = history_with(tmp_path, 3, n_failed=2)
    v = view(h, run, 5)
    assert [r.candidate_id for r in v.failures] == ["r1-c0004", "r1-c0003"]
    user = Prompts().propose_messages(history=v, token_budget=5000, directions=["never use avg_pool_3x3"],
                                      insights=["3x3 convs on every edge helped"], **CONTEXT)
    system, user = user[0]["content"], user[1]["content"]
    assert "failed: NaN or infinite training loss at epoch 3, step 4" in user and " ..." in user
    assert "x" * 301 not in user and "3x3 convs on every edge helped" in user
    assert "never use avg_pool_3x3" in system
    assert "r1-c0002: 0.5400" in user.split("Most recent:")[0]  # best first
    assert user.count("r1-c0002") == 1  # a best candidate is not listed again as recent


def test_the_memory_recorder_chooses_the_same_rows(tmp_path):
    from agent.store.recorder import MemoryRecorder

    h, run = history_with(tmp_path, 30, n_failed=3)
    mem = MemoryRecorder()
    mem.create_run(Run(run_id="r1", task="nb201-cifar10", space="nb201", proposer="llm", seed=0, budget=1000))
    rows = h.run_candidates(run)
    mem.add_candidates([Candidate(candidate_id=r["candidate_id"], run_id="r1", seq=r["seq"], space="nb201", spec=r["spec"],
                                  canonical_key=r["canonical_key"], proposer="llm", status=Status(r["status"]),
                                  error=r["error"]) for r in rows])
    mem.add_evaluations("r1", [Evaluation(candidate_id=r["candidate_id"], status=Status(r["status"]),
                                          val_accuracy=r["val_accuracy"]) for r in rows])
    a, b = h.prompt_history(run), mem.prompt_history(run)
    for name in ("best", "recent", "failures"):
        assert [r["candidate_id"] for r in a[name]] == [r["candidate_id"] for r in b[name]], name
    assert len(a["diverse"]) == len(b["diverse"]) == 5


def test_a_users_template_overrides_and_a_broken_one_is_named(tmp_path):
    (tmp_path / "propose.j2").write_text("Only the task: {{ task }}\n")
    messages = Prompts(override_dir=tmp_path).propose_messages(history=HistoryView(), token_budget=2000, **CONTEXT)
    assert messages[1]["content"] == "Only the task: nb201-cifar10\n" and "Rules:" in messages[0]["content"]
    (tmp_path / "propose.j2").write_text("{{ task ")
    with pytest.raises(UserInputError, match="propose.j2"):
        Prompts(override_dir=tmp_path).propose_messages(history=HistoryView(), token_budget=2000, **CONTEXT)


def test_repair_and_reflect_render(tmp_path):
    h, run = history_with(tmp_path, 3, n_failed=1)
    p = Prompts()
    repair = p.render("repair.j2", error="spec.edge_1_0: unknown op 'conv5x5'", reply='{"spec": {"edge_1_0": "conv5x5"}}')
    assert "unknown op 'conv5x5'" in repair and "conv5x5" in repair
    (message,) = p.reflect_messages(history=view(h, run, 4), token_budget=2000, max_insights=5, **CONTEXT)
    reflect = message["content"]
    assert message["role"] == "user" and "at most 5" in reflect and "r1-c0003: failed" in reflect
    assert "r1-c0002: 0.5500" in reflect and '{"insights"' in reflect


def test_insights_and_directions_reach_the_prompts_and_survive_the_token_budget(tmp_path):
    h, run = history_with(tmp_path, 200)
    full = view(h, run, 200, best=50, recent=50, diverse=50)
    full = HistoryView(**{**full.__dict__, "insights": ["nor_conv_3x3 on every edge wins", "avoid none on edge_1_0"]})
    messages = Prompts().propose_messages(history=full, token_budget=900, directions=["never use avg_pool_3x3"], **CONTEXT)
    assert sum(estimate_tokens(m["content"]) for m in messages) <= 900
    assert "never use avg_pool_3x3" in messages[0]["content"]
    assert "- nor_conv_3x3 on every edge wins" in messages[1]["content"] and "more evaluated candidates" in messages[1]["content"]
    (reflect,) = Prompts().reflect_messages(history=full, token_budget=900, max_insights=3,
                                            directions=["never use avg_pool_3x3"], **CONTEXT)
    assert "Earlier insights" in reflect["content"] and "never use avg_pool_3x3" in reflect["content"]


def test_a_parent_turns_the_prompt_into_an_edit(tmp_path):
    from agent.prompting import Row

    h, run = history_with(tmp_path, 5)
    parent = Row(candidate_id="r1-c0004", description="|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|"
                                                      "nor_conv_3x3~1|avg_pool_3x3~2|", val_accuracy=0.58)
    (_, user) = Prompts().propose_messages(history=view(h, run, 5), token_budget=2000, parent=parent, **CONTEXT)
    assert "## Start from this candidate\n- r1-c0004: 0.5800 |" in user["content"]
    assert "Propose an edit of it" in user["content"] and "Propose the next candidate" not in user["content"]


def test_rows_state_the_other_objectives_measured_before_training(tmp_path):
    h = History(tmp_path / "home")
    h.create_run(Run(run_id="r1", task="digits", space="nb201", proposer="llm", seed=0, budget=10))
    rng = random.Random(1)
    specs = [NB201.sample(rng) for _ in range(2)]
    h.add_candidates([Candidate(candidate_id=f"r1-c000{i}", run_id="r1", seq=i, space="nb201", spec=s,
                                canonical_key=NB201.canonical_key(s), proposer="llm", status=Status.RUNNING,
                                measurements={"latency_ms": 0.4123 * (i + 1), "params": 12300 + i, "flops": 2_500_000})
                      for i, s in enumerate(specs)])
    h.add_evaluations("r1", [Evaluation(candidate_id=f"r1-c000{i}", status=Status.OK, val_accuracy=0.9 - i / 10)
                             for i in range(2)])
    view = HistoryView.from_rows(h.prompt_history("r1"), NB201.canonical_key, evaluations=2, budget=10,
                                 show=("latency_ms", "params"))
    text = Prompts().propose_messages(history=view, token_budget=4000, **CONTEXT)[1]["content"]
    assert "r1-c0000: 0.9000 (latency 0.412 ms, 12,300 params) |" in text
    assert "r1-c0001: 0.8000 (latency 0.825 ms, 12,301 params) |" in text and "FLOPs" not in text
    plain = HistoryView.from_rows(h.prompt_history("r1"), NB201.canonical_key, evaluations=2, budget=10)
    assert "r1-c0000: 0.9000 |" in Prompts().propose_messages(history=plain, token_budget=4000, **CONTEXT)[1]["content"]
