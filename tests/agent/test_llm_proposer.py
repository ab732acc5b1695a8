"""The LLM proposer: prompts from the history, repairs, duplicates, every call recorded.

Repairs and duplicates are driven through the real openai backend against the scripted
OpenAI-compatible server on loopback (tests/agent/test_llm_openai.py); the last test runs
the real offline model."""

from __future__ import annotations

import json
import random

import pytest

from agent.llm.openai_backend import OpenAIBackend
from agent.prompting import HistoryView
from agent.proposers.base import ProposalContext
from agent.proposers.llm import LLMProposer
from agent.store import History
from evaluator.errors import SpecError
from agent.records import Run
from evaluator.spaces import get_space
from tests.agent.test_llm_openai import ok, serve  # noqa: F401 - the fixture

NB201 = get_space("nb201")
TASK = {"task": "nb201-cifar10", "task_description": "NAS-Bench-201 on CIFAR-10",
        "objectives": ["maximise validation accuracy"]}
CELL = {f"edge_{i}_{j}": "nor_conv_3x3" for i in range(1, 4) for j in range(i)}
SEEN = dict(CELL, edge_3_2="skip_connect")


def proposer_with(backend, tmp_path, **kw):
    h = History(tmp_path / "home")
    h.create_run(Run(run_id="r1", task="nb201-cifar10", space="nb201", proposer="llm", seed=0, budget=10))
    view = lambda ctx: HistoryView.from_rows(h.prompt_history("r1"), NB201.canonical_key,  # noqa: E731
                                             evaluations=ctx.evaluations, budget=ctx.budget)
    return LLMProposer(NB201, 0, backend=backend, run_id="r1", history=view, record=h.add_llm_calls, task=TASK, **kw), h


def context(*specs):
    return ProposalContext(seen=frozenset(NB201.canonical_key(s) for s in specs), evaluations=len(specs), budget=10)


def test_invalid_and_duplicate_replies_are_repaired_and_every_call_is_recorded(serve, tmp_path):
    server = serve(ok("I would use convolutions."),
                   ok(json.dumps({"rationale": "skip at the end", "spec": SEEN})),
                   ok(json.dumps({"rationale": "all 3x3 convs", "spec": CELL})))
    backend = OpenAIBackend("m", base_url=server.url, timeout=5, backoff=0.01)
    proposer, h = proposer_with(backend, tmp_path)
    (p,) = proposer.propose(1, context(SEEN))
    assert p.spec == CELL and p.rationale == "all 3x3 convs" and p.model == "m" and p.prompt_ref.startswith("r1-p")
    calls = h.llm_calls("r1")
    assert [(c["attempt"], c["template"], c["outcome"]) for c in calls] == [
        (0, "propose.j2", "schema_invalid"), (1, "repair.j2", "spec_invalid"), (2, "repair.j2", "valid")]
    assert "no JSON object" in calls[0]["error"] and calls[1]["error"].startswith("duplicate")
    assert calls[2]["messages"][-1]["content"].startswith("Your last answer could not be used:\nduplicate")
    assert calls[2]["response"] == json.dumps({"rationale": "all 3x3 convs", "spec": CELL})
    sent = server.requests[0]["body"]["messages"]
    assert "nb201-cifar10" in sent[1]["content"] and "nor_conv_3x3" in sent[1]["content"]
    totals = h.llm_totals("r1")
    assert totals["calls"] == 3 and totals["repairs"] == 2 and totals["valid_rate"] == 1.0
    assert totals["schema_valid_rate"] == pytest.approx(2 / 3)


def test_a_model_that_keeps_repeating_gets_a_mutation_instead(serve, tmp_path):
    server = serve(ok(json.dumps({"rationale": "again", "spec": SEEN})))
    proposer, h = proposer_with(OpenAIBackend("m", base_url=server.url, timeout=5), tmp_path, max_repairs=1)
    (p,) = proposer.propose(1, context(SEEN))
    assert NB201.canonical_key(NB201.validate(p.spec)) != NB201.canonical_key(SEEN) and "mutation" in p.rationale
    assert [c["outcome"] for c in h.llm_calls("r1")] == ["spec_invalid", "spec_invalid"]


def test_repairs_that_run_out_return_the_last_reply_for_the_search_to_record(serve, tmp_path):
    server = serve(ok('{"rationale": "x", "spec": {"edge_1_0": "conv9x9"}}'))
    proposer, h = proposer_with(OpenAIBackend("m", base_url=server.url, timeout=5), tmp_path, max_repairs=1)
    (p,) = proposer.propose(1, context())
    assert p.rationale == "the model's last invalid reply" and len(h.llm_calls("r1")) == 2
    with pytest.raises(SpecError, match="conv9x9"):
        NB201.validate(p.spec)


@pytest.mark.slow
def test_cli_search_with_an_openai_compatible_endpoint(serve, tiny_tables, tmp_path):
    """`agent search --proposer llm --llm openai` end to end: the summary's llm object, the
    calls in the history, `agent show --prompt`, and the key never written anywhere."""
    from tests.conftest import run_cli

    rng = random.Random(1)
    cells = [NB201.sample(rng) for _ in range(40)]
    counter = iter(range(1000))

    def reply(body):
        i = next(counter)
        return ok(json.dumps({"rationale": f"idea {i}", "spec": cells[i % len(cells)]}))

    server = serve(reply)
    home = tmp_path / "home"
    out = run_cli("search", "--task", "nb201-cifar10", "--benchmark-dir", str(tiny_tables), "--proposer", "llm",
                  "--llm", "openai", "--model", "m", "--budget", "5", "--json", home=home,
                  env={"OPENAI_BASE_URL": server.url, "OPENAI_API_KEY": "sk-very-secret-key"})
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["proposer"] == "llm" and summary["evaluations"] == 5
    llm = summary["llm"]
    assert llm["calls"] >= 5 and llm["schema_valid_rate"] == 1.0 and llm["valid_rate"] == 1.0 and llm["tokens_in"] > 0
    best = summary["best"]["candidate_id"]
    shown = json.loads(run_cli("show", best, "--prompt", "--json", home=home).stdout)
    (call,) = shown["llm_calls"]
    assert call["outcome"] == "valid" and call["backend"] == "openai"
    i = int(json.loads(call["response"])["rationale"].split()[1])  # the i-th request got reply i
    assert call["messages"] == server.requests[i]["body"]["messages"]  # exactly what was sent
    text = run_cli("show", best, "--prompt", home=home).stdout
    assert call["messages"][1]["content"] in text and call["response"] in text
    assert b"sk-very-secret-key" not in (home / "history.duckdb").read_bytes()


@pytest.mark.llm
@pytest.mark.slow
def test_cli_code_mode_search_with_the_offline_model(tmp_path):
    """The code-mode acceptance command, smaller: the offline model edits model files shown in
    its prompt (every reply parses: grammar-constrained decoding), the candidates train in the
    sandbox, every call is in the history, and `agent show --prompt` prints prompt and reply exactly."""
    from tests.conftest import run_cli

    home = tmp_path / "home"
    out = run_cli("search", "--task", "digits", "--space", "code", "--proposer", "llm", "--llm", "local", "--budget", "1",
                  "--epochs", "1", "--final-seeds", "1", "--reflect-every", "0", "--json", home=home, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout)
    llm = summary["llm"]
    assert summary["space"] == "code" and summary["evaluations"] == 1 and summary["best"]["val_accuracy"] is not None
    assert llm["schema_valid_rate"] == 1.0 and llm["calls"] >= 1 and llm["tokens_out"] > 0 and llm["cost"] == 0.0
    run = json.loads(run_cli("history", "--run", "latest", "--json", home=home).stdout)
    evaluated = [c for c in run["candidates"] if c["status"] != "invalid"]
    assert len(evaluated) == 1 and all(c["status"] in ("ok", "failed") for c in evaluated)
    cid = evaluated[0]["candidate_id"]
    candidate = json.loads(run_cli("show", cid, "--json", home=home).stdout)
    assert "def build_model" in candidate["spec"]["source"] and "bwrap" in json.dumps(candidate)  # trained in the sandbox
    calls = json.loads(run_cli("show", cid, "--prompt", "--json", home=home).stdout)["llm_calls"]
    assert calls and calls[0]["backend"] == "local" and "def build_model" in calls[0]["messages"][1]["content"]
    text = run_cli("show", cid, "--prompt", home=home).stdout
    for call in calls:
        assert all(m["content"] in text for m in call["messages"]) and call["response"] in text


def test_a_declared_space_turns_a_rule_the_model_keeps_breaking_into_the_nearest_valid_candidate(serve, tmp_path):
    """The scripted endpoint (a double of a remote API) keeps proposing nine skips, which the
    space file's rule forbids; after the repairs the proposal is the nearest candidate that keeps it."""
    from evaluator.spaces.declared import DeclaredSpace
    from evaluator.spaces.declared.file import load_space_file
    from tests.evaluator.test_declared_space import small_space_text, write

    space = DeclaredSpace(load_space_file(write(tmp_path, small_space_text(
        '\n[[constraints]]\nrule = "count(\'skip\') <= 7"\nmessage = "two convolutions at least"\n', slots=9))))
    bad = {f"b{i}": "skip" for i in range(1, 10)}
    server = serve(ok(json.dumps({"rationale": "all skips", "spec": bad})))
    h = History(tmp_path / "home")
    h.create_run(Run(run_id="r1", task="lookup:space.toml", space="declared", proposer="llm", seed=0, budget=10))
    view = lambda ctx: HistoryView.from_rows(h.prompt_history("r1"), space.summary,  # noqa: E731
                                             evaluations=ctx.evaluations, budget=ctx.budget)
    proposer = LLMProposer(space, 0, backend=OpenAIBackend("m", base_url=server.url, timeout=5), run_id="r1",
                           history=view, record=h.add_llm_calls, task=TASK, max_repairs=1)
    (p,) = proposer.propose(1, ProposalContext(seen=frozenset(), evaluations=0, budget=10))
    assert p.rationale.startswith("nearest valid candidate") and "breaks the constraint(s)" in p.rationale
    assert space.validate(p.spec) == p.spec and list(p.spec.values()).count("skip") == 7
    assert [c["outcome"] for c in h.llm_calls("r1")] == ["spec_invalid", "spec_invalid"]
    sent = server.requests[0]["body"]["messages"][-1]["content"]
    assert "Search space: six-blocks" in sent and "two convolutions at least" in sent
