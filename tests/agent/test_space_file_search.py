"""`agent search --space-file`: a declared space searched by every proposer, by lookup in the
user's tables or by real training of the file's builder in the sandbox."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.config import Settings
from agent.engine.runner import run_search
from agent.store import History
from evaluator.errors import UserInputError
from tests.conftest import ROOT, run_cli
from tests.evaluator.test_declared_space import small_space_text, write
from tests.evaluator.test_lookup import score, write_space

NB201_FILE = ROOT / "docs" / "examples" / "nb201_cell.toml"

BUILDER = '''
import torch
from torch import nn

def block(kind, c):
    if kind == "conv3":
        return nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU())
    if kind == "conv5":
        return nn.Sequential(nn.Conv2d(c, c, 5, padding=2), nn.BatchNorm2d(c), nn.ReLU())
    return nn.Identity()

def build_model(choices, input_shape, num_classes):
    c = 8
    layers = [nn.Conv2d(input_shape[0], c, 3, padding=1), nn.ReLU()]
    layers += [block(choices[f"b{i}"], c) for i in range(1, 7)]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes))
'''


@pytest.mark.slow
@pytest.mark.parametrize("proposer", ["random", "evolution"])
def test_the_nb201_space_file_chooses_and_reports_exactly_as_the_built_in_task(nb201_dir, tmp_path, proposer):
    """Acceptance: the NAS-Bench-201 cell as a space file, the shared tables, the same seed."""
    common = dict(home=tmp_path / "home", proposer=proposer, budget=100, seed=0)
    builtin = run_search(Settings(task="nb201-cifar10", benchmark_dir=nb201_dir, **common))
    declared = run_search(Settings(space_file=NB201_FILE, tables=[nb201_dir / "nb201_12epoch_accuracy.csv",
                                                                  nb201_dir / "nb201_cifar10_200epoch_test.csv"],
                                   **common))
    assert declared.task == "lookup:nb201_cell.toml" and declared.space == "declared" and not declared.warnings
    assert declared.best.key == builtin.best.arch
    assert declared.best.test_accuracy == builtin.best.test_accuracy
    assert declared.best.val_accuracy == builtin.best.val_accuracy
    assert [t["key"] for t in declared.top] == [t["arch"] for t in builtin.top]
    assert (declared.evaluations, declared.counts, declared.duplicates_skipped) == \
        (builtin.evaluations, builtin.counts, builtin.duplicates_skipped)
    assert "cifar10_test_200ep from nb201_cifar10_200epoch_test.csv" in declared.best.test_source


@pytest.mark.slow
def test_random_and_evolution_search_a_small_declared_space_through_the_cli(tmp_path):
    path = write_space(tmp_path / "space")
    home = tmp_path / "home"
    for proposer in ("random", "evolution"):
        out = run_cli("search", "--space-file", str(path), "--proposer", proposer, "--budget", "25", "--json", home=home)
        assert out.returncode == 0, out.stderr
        summary = json.loads(out.stdout)
        assert summary["evaluations"] == 25 and summary["counts"]["ok"] == 25 and summary["task"] == "lookup:space.toml"
        best = summary["best"]
        combo = tuple(best["spec"][f"b{i}"] for i in range(1, 7))
        assert best["key"] == "-".join(combo) and best["summary"].startswith("b1=")
        assert best["val_accuracy"] == pytest.approx(score(combo) / 100)
        assert best["test_accuracy"] == pytest.approx((score(combo) + 1.5) / 100)
    text = run_cli("search", "--space-file", str(path), "--budget", "3", home=home).stdout
    assert "choices: b1=" in text and "table key" in text


@pytest.mark.llm
@pytest.mark.slow
def test_the_local_llm_searches_a_declared_space_and_every_proposal_is_valid(tmp_path):
    path = write_space(tmp_path / "space")
    home = tmp_path / "home"
    summary = run_search(Settings(home=home, space_file=path, proposer="llm", llm="local", budget=3, reflect_every=0))
    assert summary.evaluations == 3 and summary.counts["ok"] == 3 and summary.counts["invalid"] == 0
    h = History(home)
    calls = h.llm_calls(summary.run_id)
    assert calls and all(c["mode"] == "grammar" for c in calls)
    # constrained decoding: every reply parses and fits the slots; a repair can only be for a repeat
    assert all(c["outcome"] == "valid" or (c["error"] or "").startswith("duplicate") for c in calls)
    prompt = calls[0]["messages"][-1]["content"]
    assert "six blocks in a row" in prompt and "5x5 convolution" in prompt and "b6: block 6" in prompt
    candidates = h.run_candidates(summary.run_id)
    assert len(candidates) == 3 and all(c["status"] == "ok" and c["proposer"] == "llm" for c in candidates)


@pytest.mark.slow
def test_a_table_with_fewer_rows_restricts_the_search_to_them(tmp_path):
    rows = [("conv3",) * 6, ("conv5",) * 6, ("skip",) * 6, ("conv3",) * 5 + ("skip",), ("skip",) + ("conv5",) * 5]
    path = write_space(tmp_path / "space", rows=rows)
    summary = run_search(Settings(home=tmp_path / "home", space_file=path, proposer="evolution", budget=10))
    assert summary.evaluations == 5 and summary.counts["ok"] == 5 and summary.counts["failed"] == 0
    assert any("hold 5 of the 729 combinations" in w for w in summary.warnings)
    assert summary.best.key == "conv3-conv3-conv3-conv3-conv3-conv3"


@pytest.mark.slow
def test_objectives_from_the_file_read_the_tables_metrics(tmp_path):
    folder = tmp_path / "space"
    path = write_space(folder, '\n[lookup]\nkey = "{b1}-{b2}-{b3}-{b4}-{b5}-{b6}"\nkey_column = "arch"\n'
                               'signal = "val"\nmetrics = { params = "params" }\n')
    path.write_text('objectives = ["accuracy", "params"]\n' + path.read_text())
    summary = run_search(Settings(home=tmp_path / "home", space_file=path, proposer="evolution", budget=30))
    assert summary.objectives == ["accuracy", "params"] and summary.pareto
    assert all(isinstance(p["params"], int) for p in summary.pareto)
    with pytest.raises(UserInputError, match="objective latency needs a latency_ms column"):
        run_search(Settings(home=tmp_path / "home", space_file=path, objectives=["accuracy", "latency"], budget=3))
    with pytest.raises(UserInputError, match="--max-params measure networks before training; a lookup has no network"):
        run_search(Settings(home=tmp_path / "home", space_file=path, max_params=10, budget=3))


@pytest.mark.slow
def test_a_resumed_run_refuses_a_space_file_that_changed(tmp_path):
    path = write_space(tmp_path / "space")
    home = tmp_path / "home"
    first = run_search(Settings(home=home, space_file=path, budget=3))
    path.write_text(path.read_text().replace("six blocks in a row", "six blocks"))
    out = run_cli("search", "--resume", first.run_id, "--budget", "5", home=home)
    assert out.returncode == 2 and "the space file" in out.stderr and "changed since the run started" in out.stderr


@pytest.mark.slow
def test_bad_space_files_and_tables_fail_before_anything_is_recorded(tmp_path):
    home = tmp_path / "home"
    bad = write(tmp_path, small_space_text() + '\n[slots.b7]\ndescription = "x"\n', "bad.toml")
    out = run_cli("search", "--space-file", str(bad), "--budget", "3", home=home)
    assert out.returncode == 2 and f"{bad} line 33: slot 'b7' has no choices" in out.stderr and "hint:" in out.stderr
    out = run_cli("search", "--task", "nb201-cifar10", "--table", "x.csv", home=home)
    assert out.returncode == 2 and "without --space-file" in out.stderr
    path = write_space(tmp_path / "space", rows=[("conv3",) * 6, ("conv3",) * 6])
    out = run_cli("search", "--space-file", str(path), "--budget", "3", home=home)
    assert out.returncode == 2 and "line 2 and line 3 hold the same key" in out.stderr
    assert not (home / "history.duckdb").exists() or History(home).list_runs() == []


def builder_space(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "builder.py").write_text(BUILDER)
    return write(folder, small_space_text() + '\n[train]\nbuilder = "builder.py"\ntask = "digits"\n')


@pytest.mark.slow
def test_a_declared_space_trains_through_its_builder_in_the_sandbox(tmp_path):
    path = builder_space(tmp_path / "space")
    home = tmp_path / "home"
    summary = run_search(Settings(home=home, space_file=path, proposer="random", budget=2, epochs=1, final_seeds=1,
                                  warm_workers=0, proxies=[]))
    assert summary.task == "digits" and summary.counts["ok"] == 2 and summary.best.test_accuracy is not None
    h = History(home)
    run = h.get_run(summary.run_id)
    assert run["config"]["space_file"] == str(path) and run["config"]["builder_sha256"]
    cand = h.get_candidate(summary.best.candidate_id)
    (ev,) = [e for e in cand["evaluations"] if e["purpose"] == "search"]
    assert ev["metrics"]["params"] > 0 and ev["metrics"]["sandbox"].startswith(run["config"]["sandbox"].split(" ")[0])

    # the export: the builder unchanged beside a model.py that calls it with the candidate's choices;
    # with torch alone it builds the trained network, loads its weights and predicts the test split
    # exactly as the sandboxed worker did
    import numpy as np
    import torch

    from evaluator.data import load_dataset
    from tests.agent.test_export import import_model_py, printed, run_torch_only

    out = run_cli("export", summary.best.candidate_id, "--out", str(tmp_path / "export"), "--json", home=home)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    folder = tmp_path / "export"
    assert (folder / "space_builder.py").read_text() == BUILDER and result["params"] == ev["metrics"]["params"]
    ran = run_torch_only(folder / "model.py")
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert int(printed(ran.stdout, "parameters:")) == ev["metrics"]["params"]
    assert printed(ran.stdout, "weights:") == "loaded weights.pt" and "-> logits (2, 10)" in ran.stdout
    module = import_model_py(folder / "model.py")
    assert module.CHOICES == summary.best.spec
    net = module.load_weights(module.build_model()).eval()
    digits = load_dataset("digits", cache_dir=tmp_path / "cache")
    with torch.no_grad():
        predictions = net(module.normalise(torch.from_numpy(digits.x_test))).argmax(1).numpy()
    assert float(np.mean(predictions == digits.y_test)) == summary.best.test_accuracy
    lookup = write_space(tmp_path / "lookup")
    looked = run_search(Settings(home=home, space_file=lookup, budget=2))
    out = run_cli("export", looked.best.candidate_id, home=home)
    assert out.returncode == 2 and "looked up in a table, never built" in out.stderr


@pytest.mark.slow
def test_a_builder_that_fails_fails_its_candidate_with_the_reason(tmp_path):
    folder = tmp_path / "space"
    path = builder_space(folder)
    (folder / "builder.py").write_text(BUILDER.replace("    c = 8\n", "    c = 8\n    if choices['b1'] == 'skip':\n"
                                                                      "        raise ValueError('no skip first')\n"))
    summary = run_search(Settings(home=tmp_path / "home", space_file=path, proposer="random", budget=4, epochs=1,
                                  final_seeds=1, warm_workers=0, proxies=[], seed=2))
    candidates, evaluations = History(tmp_path / "home").run_records(summary.run_id)
    search = {e.candidate_id: e for e in evaluations if e.purpose.value == "search"}
    assert summary.evaluations == 4 and len(search) == 4 and any(c.spec["b1"] == "skip" for c in candidates)
    for c in candidates:
        e = search[c.candidate_id]
        if c.spec["b1"] == "skip":
            assert e.status.value == "failed" and "no skip first" in e.error
        else:
            assert e.status.value == "ok"


def test_a_declared_space_refuses_flags_that_need_a_trusted_build(tmp_path):
    path = builder_space(tmp_path / "space")
    with pytest.raises(UserInputError, match="must never import code-mode candidates .* or a space file's builder"):
        run_search(Settings(home=tmp_path / "home", space_file=path, objectives=["accuracy", "params"], budget=2,
                            epochs=1))
    with pytest.raises(UserInputError, match="--space layers and --space-file"):
        run_search(Settings(home=tmp_path / "home", space_file=path, space="layers", budget=2))
    lookup_only = write_space(tmp_path / "lookup")
    with pytest.raises(UserInputError, match="declares no \\[train\\] builder"):
        run_search(Settings(home=tmp_path / "home", space_file=lookup_only, task="digits", budget=2))


@pytest.mark.slow
def test_agent_spaces_checks_a_file_and_agent_eval_looks_one_candidate_up(tmp_path):
    path = write_space(tmp_path / "space")
    out = run_cli("spaces", "--space-file", str(path), "--json", home=tmp_path / "home")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["combinations"] == 729 and info["lookup"]["combinations"] == 729 and info["slots"] == 6
    assert info["schema"]["properties"]["b1"]["enum"] == ["conv3", "conv5", "skip"]
    spec = {f"b{i}": "conv3" for i in range(1, 7)}
    out = run_cli("eval", "--space-file", str(path), "--spec", json.dumps(spec), "--final", "--json",
                  home=tmp_path / "home")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["val_accuracy"] == pytest.approx(score(("conv3",) * 6) / 100) and result["key"] == "-".join(["conv3"] * 6)
    assert result["test_accuracy"] == pytest.approx((score(("conv3",) * 6) + 1.5) / 100)


@pytest.mark.slow
def test_the_worked_example_of_docs_spaces_md_holds_together(tmp_path):
    """docs/examples/blocks: the file loads, its sweep (made by a real training search) looks up,
    and its builder builds every kind of block for the digits' shape."""
    from evaluator.pools.lookup import Lookup
    from evaluator.models.code import build_from_builder
    from evaluator.spaces.declared import DeclaredSpace
    from evaluator.spaces.declared.file import load_space_file

    folder = ROOT / "docs" / "examples" / "blocks"
    file = load_space_file(folder / "blocks.toml")
    space = DeclaredSpace(file)
    lookup = Lookup(space, file.lookup, [folder / "sweep.csv"])
    assert file.size == 2187 and len(lookup.combinations()) == 30
    assert all(space.allows(dict(zip(space.names, c))) for c in lookup.combinations())
    for combo in sorted(lookup.combinations())[:3]:
        net = build_from_builder(folder / "builder.py", dict(zip(space.names, combo)), (1, 8, 8), 10)
        assert sum(p.numel() for p in net.parameters()) == lookup.metrics["params"][combo]
    summary = run_search(Settings(home=tmp_path / "home", space_file=folder / "blocks.toml",
                                  tables=[folder / "sweep.csv"], proposer="evolution", budget=30))
    assert summary.evaluations == 30 and summary.best.val_accuracy == max(lookup.signal.values())
