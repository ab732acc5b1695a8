"""`agent export`: real candidates trained on digits through the CLI (layers, an nb201 cell, a code-mode
file), exported, and their model.py run where only torch (and what torch itself requires) can be
imported; the kept weights reproduce the recorded test accuracy; ONNX passes onnx.checker. Then the
rules, on histories written directly: what cannot be exported, untrusted weights, the export folder."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import random
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from agent.api import export
from agent.exporter.candidate import _check_same_network, _run_source
from agent.exporter.facts import gather
from agent.exporter.layers_source import layers_source
from agent.exporter.nb201_source import nb201_source
from agent.exporter.template import render
from agent.store import History
from evaluator.data.digits import load_digits_dataset
from evaluator.errors import NotFoundError, UserInputError
from evaluator.models import build_model
from evaluator.spaces.code.seeds import seed_path
from agent.records import Run
from evaluator.records import Candidate, Evaluation, Purpose, Status
from evaluator.spaces import get_space
from evaluator.spaces.nb201 import EDGE_FIELDS, arch_string
from tests.conftest import run_cli

# Runs a model.py where an import of anything but the standard library and torch's installed
# requirement closure (importlib.metadata, recursively, extras left out) fails; then reports that
# the project's own packages and the usual suspects were indeed unimportable.
TORCH_ONLY = r'''
import importlib.abc, importlib.metadata, re, runpy, sys

def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()

closure, todo = set(), ["torch"]
while todo:
    dist = todo.pop()
    if norm(dist) in closure:
        continue
    closure.add(norm(dist))
    try:
        requires = importlib.metadata.requires(dist) or []
    except importlib.metadata.PackageNotFoundError:
        continue
    for req in requires:
        if ";" in req and "extra" in req.split(";", 1)[1]:
            continue  # an optional extra, not installed with torch
        todo.append(re.match(r"[A-Za-z0-9._-]+", req).group(0))
allowed = set(sys.stdlib_module_names) | {"torch"}
allowed |= {mod for mod, dists in importlib.metadata.packages_distributions().items()
            if any(norm(d) in closure for d in dists)}

class TorchOnly(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in allowed:
            return None
        raise ModuleNotFoundError(f"blocked: {name} is neither the standard library nor torch's", name=name)

sys.meta_path.insert(0, TorchOnly())
runpy.run_path(sys.argv[1], run_name="__main__")
blocked = []
for name in ("agent", "evaluator", "sandbox", "sklearn", "numpy", "duckdb", "pydantic"):
    try:
        __import__(name)
    except ModuleNotFoundError:
        blocked.append(name)
print("blocked: " + ", ".join(blocked))
'''
MUST_BE_BLOCKED = {"agent", "evaluator", "sandbox", "sklearn"}


ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # tiny forward passes: on a busy machine a second thread only spins


def run_torch_only(model_py: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-I", "-c", TORCH_ONLY, str(model_py)], capture_output=True, text=True,
                          cwd=model_py.parent, timeout=300, env={**os.environ, **ONE_THREAD})


@pytest.fixture(autouse=True)
def one_thread():
    """The forward passes here are tiny: one thread (restored afterwards)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def printed(out: str, prefix: str) -> str:
    return next(line[len(prefix):].strip() for line in out.splitlines() if line.startswith(prefix))


def import_model_py(path: Path):
    spec = importlib.util.spec_from_file_location(f"exported_{path.parent.name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_acceptance_trained_candidates_export_run_with_torch_alone_and_reproduce_their_results(tmp_path):
    """One layers spec (with --onnx), one nb201 cell and the code-mode seed file, trained on digits
    through the CLI at the same time, exported, and run with torch alone."""
    home = tmp_path / "home"
    env = {"AGENT_PROXIES": "[]"}  # no zero-cost proxies: seconds less per job
    layers_spec = {"stem": {"channels": 16}, "stages": [{"block": "residual", "channels": 16, "pool": "max"}],
                   "head": {"hidden": 32, "dropout": 0.1}, "training": {"optimizer": "adam", "lr": 0.005}}
    cell = "|nor_conv_1x1~0|+|skip_connect~0|none~1|+|avg_pool_3x3~0|none~1|skip_connect~2|"  # light: seconds an epoch
    # --workers 2 gives each job one thread (the pool splits the cores among its workers): three evals
    # at once then share the cores instead of spinning threads against each other (10x slower here)
    common = ("--task", "digits", "--epochs", "1", "--final", "--final-seeds", "1", "--workers", "2", "--json")
    evals = {
        "layers": ("eval", *common, "--spec", json.dumps(layers_spec)),
        "nb201": ("eval", *common, "--space", "nb201", "--arch", cell),
        # --unsafe only matters where bubblewrap is missing: the seed file is the project's own code
        "code": ("eval", *common, "--file", str(seed_path("digits")), "--unsafe"),
    }
    with ThreadPoolExecutor(3) as pool:
        done = dict(zip(evals, pool.map(lambda args: run_cli(*args, home=home, env=env, timeout=600), evals.values())))
    evaluated = {}
    for space, out in done.items():
        assert out.returncode == 0, f"{space}: {out.stderr[-3000:]}"
        evaluated[space] = json.loads(out.stdout)
        assert evaluated[space]["status"] == "ok" and evaluated[space]["params"] > 0, space

    outs = {space: tmp_path / f"export-{space}" for space in evals}
    with ThreadPoolExecutor(3) as pool:
        exported = dict(zip(evals, pool.map(
            lambda space: run_cli("export", evaluated[space]["candidate_id"], "--out", str(outs[space]), "--json",
                                  *(("--onnx",) if space == "layers" else ()), home=home, env=ONE_THREAD,
                                  timeout=600), evals)))
        ran = dict(zip(evals, pool.map(lambda space: run_torch_only(outs[space] / "model.py"), evals)))

    digits = load_digits_dataset()
    h = History(home)
    for space in evals:
        out = exported[space]
        assert out.returncode == 0, f"{space}: {out.stderr[-3000:]}"
        result = json.loads(out.stdout)
        recorded = evaluated[space]["params"]  # what the worker counted on the network it trained
        assert result["params"] == recorded and result["warnings"] == [], (space, result)
        assert result["weights"] == str(outs[space] / "weights.pt") and result["weights_seed"] == 0, space

        run = ran[space]
        assert run.returncode == 0, f"{space}: {run.stderr[-3000:]}"
        assert int(printed(run.stdout, "parameters:")) == recorded, space
        assert printed(run.stdout, "weights:") == "loaded weights.pt", space
        assert "-> logits (2, 10)" in printed(run.stdout, "forward pass:"), space
        assert MUST_BE_BLOCKED <= set(printed(run.stdout, "blocked:").split(", ")), (space, run.stdout)

        # the strongest check: the exported network with the exported weights predicts the test split
        # exactly as the sandboxed worker did when it recorded seed 0's test accuracy
        finals = [e for e in h.get_candidate(result["candidate_id"])["evaluations"] if e["purpose"] == "final"]
        seed0 = next(e for e in finals if e["metrics"]["seed"] == 0)
        module = import_model_py(outs[space] / "model.py")
        net = module.load_weights(module.build_model()).eval()
        with torch.no_grad():
            predictions = net(module.normalise(torch.from_numpy(digits.x_test))).argmax(1).numpy()
        assert float(np.mean(predictions == digits.y_test)) == seed0["test_accuracy"], space

        card = (outs[space] / "model.py").read_text()
        assert f"candidate     {result['candidate_id']}, status ok" in card and "parameters    " in card
        recipe = json.loads((outs[space] / "recipe.json").read_text())
        assert recipe["export"]["candidate_id"] == result["candidate_id"] and recipe["results"]["params"] == recorded
        assert recipe["recipe"] == module.RECIPE and recipe["recipe"]["epochs"] == 1
        assert recipe["recipe"]["input"]["mean"] == pytest.approx([float(digits.x_train.mean() / 16)], rel=1e-5)

        assert "(one retraining from scratch, seed 0; no spread)" in card, space

    layers_recipe = json.loads((outs["layers"] / "recipe.json").read_text())["recipe"]
    assert (layers_recipe["optimizer"], layers_recipe["lr"], layers_recipe["seeds"]) == ("adam", 0.005, [0])
    nb201_recipe = json.loads((outs["nb201"] / "recipe.json").read_text())["recipe"]
    assert (nb201_recipe["optimizer"], nb201_recipe["lr"], nb201_recipe["nesterov"]) == ("sgd", 0.05, True)  # the trainer's defaults
    assert f"The NAS-Bench-201 network of the cell {cell}," in (outs["nb201"] / "model.py").read_text()
    code_recipe = json.loads((outs["code"] / "recipe.json").read_text())["recipe"]
    assert (code_recipe["optimizer"], code_recipe["lr"]) == ("adamw", 0.003)  # the seed file's TRAINING
    assert (outs["code"] / "candidate_model.py").read_bytes() == seed_path("digits").read_bytes()

    # ONNX: the checker passes, and the ONNX graph computes what the torch network computes
    import onnx
    from onnx.reference import ReferenceEvaluator

    onnx.checker.check_model(str(outs["layers"] / "model.onnx"), full_check=True)
    module = import_model_py(outs["layers"] / "model.py")
    net = module.load_weights(module.build_model()).eval()
    images = module.normalise(torch.from_numpy(digits.x_test[:16]))
    (logits,) = ReferenceEvaluator(str(outs["layers"] / "model.onnx")).run(None, {"images": images.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(logits, net(images).numpy(), rtol=1e-4, atol=1e-5)


# -- histories written directly: the rules, in milliseconds ---------------------------------------

DIGITS_CONFIG = {"input_shape": [1, 8, 8], "num_classes": 10, "epochs": 3, "device": "cpu",
                 "data": "scikit-learn load_digits, 60/20/20 split (seed 0)"}
SPEC = {"stem": {"channels": 8}, "stages": [{"channels": 8, "block": "dwsep"}, {"channels": 16, "stride": 2}]}


def keep_weights(home: Path, run_id: str, cid: str, seed: int, state) -> str:
    """Weights kept as the training pool keeps them: the file and the .json beside it."""
    path = home / "weights" / run_id / f"{cid}-seed{seed}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    facts = {"seed": seed, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
             "input": {"scale": 16.0, "mean": [0.25], "std": [0.5]}}
    path.with_suffix(".json").write_text(json.dumps(facts))
    return str(path)


def write_history(home: Path, *, space="layers", spec=None, status=Status.OK, finals=2, task="digits",
                  config=None) -> tuple[History, str, list[dict]]:
    """A run with one candidate, its search evaluation and ``finals`` final runs with kept weights."""
    h = History(home)
    run_id = "20260101-000000-abcdef"
    cid = f"{run_id}-c0000"
    config = DIGITS_CONFIG if config is None else config
    shape, classes = tuple(config.get("input_shape") or (3, 32, 32)), config.get("num_classes") or 10
    space_obj = get_space(space, input_shape=shape, num_classes=classes)
    spec = space_obj.validate(SPEC if spec is None else spec)
    h.create_run(Run(run_id=run_id, task=task, space=space, proposer="manual", seed=0, budget=1, config=config))
    h.add_candidates([Candidate(candidate_id=cid, run_id=run_id, seq=0, space=space, spec=spec,
                                canonical_key=space_obj.canonical_key(spec), proposer="manual", status=status,
                                error=None if status is Status.OK else "NaN loss at epoch 2, step 3")])
    params = None
    states = []
    if space != "code":
        net = build_model(space, spec, shape, classes)
        params = sum(p.numel() for p in net.parameters())
    evaluations = [Evaluation(candidate_id=cid, status=status, fidelity=3.0,
                              val_accuracy=0.9 if status is Status.OK else None, metrics={"params": params},
                              error=None if status is Status.OK else "NaN loss at epoch 2, step 3")]
    for seed in range(finals):
        state = {k: v.clone() for k, v in build_model(space, spec, shape, classes).state_dict().items()}
        states.append(state)
        evaluations.append(Evaluation(candidate_id=cid, purpose=Purpose.FINAL, status=Status.OK, fidelity=3.0,
                                      test_accuracy=0.8 + seed / 100, source="trained on cpu",
                                      metrics={"seed": seed, "params": params,
                                               "weights": keep_weights(home, run_id, cid, seed, state)}))
    h.add_evaluations(run_id, evaluations)
    return h, cid, states


@pytest.mark.slow
def test_unknown_invalid_and_unevaluated_candidates_are_refused_with_their_status(tmp_path):
    home = tmp_path / "home"
    write_history(home)
    out = run_cli("export", "nope-c0000", home=home)
    assert out.returncode == 2 and "no candidate 'nope-c0000'" in out.stderr and "agent history --run RUN" in out.stderr
    for status in (Status.INVALID, Status.QUEUED, Status.RUNNING):
        other = tmp_path / status.value
        h, cid, _ = write_history(other, status=status, finals=0)
        with pytest.raises(UserInputError, match=f"is {status.value}") as err:
            export(cid, home=other)
        assert "agent history --run RUN" in err.value.hint and not (other / "exports").exists()
    with pytest.raises(NotFoundError):
        export("nope", home=tmp_path / "empty")


@pytest.mark.parametrize("bad_id", ["../../escape", "/tmp/elsewhere", ".hidden", "a/b"])
def test_a_stored_id_that_could_name_another_folder_is_refused(tmp_path, bad_id):
    """The ids come from the history, which another program may have written: one with a path in
    it used to become the export folder (exports/../../escape is outside the home)."""
    home = tmp_path / "home"
    h, cid, _ = write_history(home, finals=0)
    row = h.get_candidate(cid)
    h.add_candidates([Candidate(candidate_id=bad_id, run_id=row["run_id"], seq=1, space="layers", spec=row["spec"],
                                canonical_key="other", proposer="manual", status=Status.OK)])
    h.add_evaluations(row["run_id"], [Evaluation(candidate_id=bad_id, status=Status.OK, fidelity=3.0, val_accuracy=0.9)])
    with pytest.raises(UserInputError, match="will not use as a folder or file name") as err:
        export(bad_id, home=home)
    assert "changed outside archagent" in err.value.hint
    assert not (tmp_path / "escape").exists() and not (home / "exports").exists()


def test_a_failed_candidate_exports_with_a_warning_and_its_status_on_the_card(tmp_path):
    home = tmp_path / "home"
    _, cid, _ = write_history(home, status=Status.FAILED, finals=0)
    result = export(cid, home=home)
    assert result["out"] == str(home / "exports" / cid) and result["files"] == ["model.py", "recipe.json"]
    assert result["weights"] is None and "is failed, not ok (NaN loss at epoch 2, step 3)" in result["warnings"][0]
    assert result["weights_note"].startswith("the candidate has no ok final evaluation")
    card = (home / "exports" / cid / "model.py").read_text()
    assert "status failed: NaN loss at epoch 2, step 3" in card and "final test    not recorded" in card
    # no weights: the input normalisation is recomputed from the digits training split
    recipe = json.loads((home / "exports" / cid / "recipe.json").read_text())["recipe"]
    assert recipe["input"]["mean"] == load_digits_dataset().input_normalisation()["mean"]


def test_the_first_final_seed_whose_weights_pass_the_checks_is_exported(tmp_path):
    home = tmp_path / "home"
    h, cid, states = write_history(home)
    result = export(cid, home=home)
    assert result["weights_seed"] == 0 and result["warnings"] == []
    card = (Path(result["out"]) / "model.py").read_text()
    assert "final test    accuracy 0.8050 +- 0.0071 (mean +- std over 2 seeds: 0, 1)" in card
    assert "weights       weights.pt: the final retraining with seed 0 (test accuracy 0.8000)" in card
    exported = torch.load(result["weights"], weights_only=True)
    assert exported.keys() == states[0].keys() and all(torch.equal(exported[k], states[0][k]) for k in exported)
    assert json.loads((Path(result["out"]) / "recipe.json").read_text())["recipe"]["input"]["mean"] == [0.25]

    seed0 = home / "weights" / "20260101-000000-abcdef" / f"{cid}-seed0.pt"
    seed0.write_bytes(seed0.read_bytes() + b"x")  # changed since the pool kept it
    result = export(cid, home=home)
    assert result["weights_seed"] == 1 and "SHA-256 differs" in result["warnings"][0]


@pytest.mark.parametrize("payload, problem", [
    ("tensor", "not a state_dict"),
    ("renamed", "keys do not match the network"),
    ("reshaped", "has shape"),
    ("nan", "NaN or infinite"),
    ("code", "cannot be loaded as tensors only"),
])
def test_untrusted_weights_are_loaded_as_tensors_only_and_checked_against_the_network(tmp_path, payload, problem):
    home = tmp_path / "home"
    h, cid, states = write_history(home, finals=1)
    state = states[0]
    path = Path(h.get_candidate(cid)["evaluations"][-1]["metrics"]["weights"])
    marker = tmp_path / "pwned"
    bad = {"tensor": lambda: torch.zeros(3),
           "renamed": lambda: {f"x.{k}": v for k, v in state.items()},
           "reshaped": lambda: {k: v.reshape(-1) if v.ndim > 1 else v for k, v in state.items()},
           "nan": lambda: {k: v * float("nan") if v.is_floating_point() else v for k, v in state.items()},
           "code": lambda: Pickled(str(marker))}[payload]()
    torch.save(bad, path)
    path.with_suffix(".json").write_text(json.dumps({"sha256": hashlib.sha256(path.read_bytes()).hexdigest()}))
    result = export(cid, home=home)
    assert result["weights"] is None and "weights.pt" not in result["files"] and not marker.exists()
    assert problem in result["warnings"][0] and "were not used" in result["warnings"][0]
    assert "none: the kept weights did not pass the checks" in (Path(result["out"]) / "model.py").read_text()


class Pickled:
    """An object whose unpickling would run a command (what torch.load without weights_only allows)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (__import__("os").system, (f"touch {self.marker}",))


def test_weights_are_found_after_the_home_moved(tmp_path):
    old = tmp_path / "old-home"
    h, cid, _ = write_history(old, finals=1)
    new = tmp_path / "new-home"
    old.rename(new)
    assert gather(History(new), cid).finals[0].weights == new / "weights" / "20260101-000000-abcdef" / f"{cid}-seed0.pt"
    assert export(cid, home=new)["weights_seed"] == 0


@pytest.mark.slow
def test_the_export_folder_must_be_new_empty_or_an_earlier_export(tmp_path):
    home = tmp_path / "home"
    _, cid, _ = write_history(home, finals=1)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(UserInputError, match="not empty and holds no earlier archagent export") as err:
        export(cid, out=mine, home=home)
    assert "new or empty folder" in err.value.hint and (mine / "notes.txt").read_text() == "keep me"
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UserInputError, match="it is a file"):
        export(cid, out=blocker, home=home)
    out = run_cli("export", cid, "--out", str(blocker / "sub"), home=home)  # cannot be created: its parent is a file
    assert out.returncode == 2 and f"cannot create the export folder {blocker / 'sub'}" in out.stderr
    assert "pass --out with a folder you can write" in out.stderr
    first = export(cid, out=tmp_path / "again", home=home)
    assert first["files"] == ["model.py", "recipe.json", "weights.pt"]
    (tmp_path / "again" / "model.onnx").write_text("stale")  # as if an earlier export had --onnx
    second = export(cid, out=tmp_path / "again", home=home)  # an earlier export is replaced whole
    assert second["files"] == first["files"] and not (tmp_path / "again" / "model.onnx").exists()


def test_onnx_needs_its_extra_and_is_refused_for_code_mode(tmp_path, monkeypatch):
    home = tmp_path / "home"
    _, cid, _ = write_history(home, finals=0)
    import agent.exporter.onnx_file as onnx_file

    real = importlib.util.find_spec
    monkeypatch.setattr(onnx_file.importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnxscript" else real(name, *a))
    with pytest.raises(UserInputError, match="--onnx needs onnxscript, which is not installed") as err:
        export(cid, onnx=True, home=home)
    assert "pip install 'archagent[onnx]'" in err.value.hint and not (home / "exports").exists()
    monkeypatch.undo()
    code_home = tmp_path / "code"
    _, code_id, _ = write_history(code_home, space="code", spec={"source": seed_path("digits").read_text()}, finals=0)
    with pytest.raises(UserInputError, match="runs the candidate's code") as err:
        export(code_id, onnx=True, home=code_home)
    assert "export without --onnx" in err.value.hint


def test_a_code_file_that_imports_more_than_torch_says_so(tmp_path):
    home = tmp_path / "home"
    source = seed_path("digits").read_text().replace("import torch\n", "import torch\nimport numpy as np\n", 1)
    _, cid, _ = write_history(home, space="code", spec={"source": source}, finals=0)
    result = export(cid, home=home)
    assert any("candidate_model.py imports numpy, which is neither torch nor the standard library" in w
               for w in result["warnings"])
    assert (Path(result["out"]) / "candidate_model.py").read_text() == source


def test_hostile_text_from_a_candidate_cannot_become_code_in_model_py(tmp_path, monkeypatch):
    """A code-mode file's docstring (shown in the card) that tries to close a docstring and start code."""
    home = tmp_path / "home"
    hostile = ("\'\'\'A net \"\"\"; __import__('pathlib').Path('PWNED').touch()  # \x0c\r"
               "\n\"\"\"; __import__('pathlib').Path('PWNED').touch()\n\'\'\'")
    source = hostile + seed_path("digits").read_text().split('"""', 2)[2]
    _, cid, _ = write_history(home, space="code", spec={"source": source}, finals=0)
    result = export(cid, home=home)
    model_py = Path(result["out"]) / "model.py"
    text = model_py.read_text()
    shown = [line for line in text.splitlines() if "PWNED" in line]
    assert shown and all(line.startswith("#") for line in shown), shown  # in the card, as comments only
    tree = compile(text, str(model_py), "exec", flags=0x400)  # PyCF_ONLY_AST
    top = {type(node).__name__ for node in tree.body}
    assert top <= {"Expr", "ImportFrom", "Import", "Assign", "FunctionDef", "If"}, top
    monkeypatch.chdir(tmp_path)
    import_model_py(model_py)  # defines the wrapper; the candidate's file is not even read until build_model()
    assert not (tmp_path / "PWNED").exists()
    assert "read it before you run it" in " ".join(line.lstrip("# ") for line in text.splitlines())


@pytest.mark.slow
def test_a_tabular_nb201_cell_exports_the_benchmark_network(tmp_path, tiny_tables):
    import agent

    home = tmp_path / "home"
    arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_1x1~2|"
    out = agent.evaluate("nb201-imagenet16", arch, benchmark_dir=tiny_tables, home=home, final=True)
    result = export(out["candidate_id"], home=home)
    net = build_model("nb201", arch, (3, 16, 16), 120)  # the table's data set: ImageNet16-120
    assert result["params"] == sum(p.numel() for p in net.parameters()) and result["weights"] is None
    ran = run_torch_only(Path(result["out"]) / "model.py")
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert int(printed(ran.stdout, "parameters:")) == result["params"]
    assert "input (2, 3, 16, 16) -> logits (2, 120)" in ran.stdout
    recipe = json.loads((Path(result["out"]) / "recipe.json").read_text())
    assert recipe["recipe"]["source"].startswith("NAS-Bench-201") and recipe["recipe"]["epochs"] == 12
    assert "2-pixel padding" in recipe["recipe"]["augmentation_detail"]
    assert recipe["results"]["val_accuracy"] == out["val_accuracy"] and recipe["num_classes"] == 120
    assert recipe["results"]["test_accuracy"] == out["test_accuracy"]


def test_generated_sources_build_exactly_the_evaluators_networks():
    """Every block kind, norm, pooling and head, and cells with every op (and none at all): the
    same state_dict keys and shapes, and bit-identical outputs for the same weights."""
    torch.manual_seed(0)
    rng = random.Random(3)
    layers = get_space("layers", input_shape=(3, 8, 8), num_classes=5)
    specs = [layers.sample(rng) for _ in range(6)]
    specs += [layers.validate({"stem": {"norm": norm}, "stages": [{"block": block, "channels": 16, "norm": norm,
                                                                   "pool": pool, "dropout": 0.1, "expansion": 3}],
                               "head": {"hidden": 16, "dropout": 0.2}})
              for block, norm, pool in [("plain", "none", "avg"), ("dwsep", "group", "max"), ("residual", "batch", "none"),
                                        ("bottleneck", "group", "avg")]]
    kinds = {(st["block"], st["norm"]) for s in specs for st in s["stages"]}
    assert {"plain", "dwsep", "residual", "bottleneck"} <= {k for k, _ in kinds}
    cells = [dict(zip(EDGE_FIELDS, ops)) for ops in (["none"] * 6, ["skip_connect"] * 6, ["nor_conv_1x1"] * 6,
                                                     ["avg_pool_3x3", "nor_conv_3x3", "none", "skip_connect",
                                                      "nor_conv_1x1", "nor_conv_3x3"])]
    cases = [("layers", s, (3, 8, 8), 5, layers_source(s, layers.summary(s))) for s in specs]
    cases += [("nb201", c, (1, 8, 8), 10, nb201_source(c)) for c in cells]
    for space, spec, shape, classes, source in cases:
        text = render([("x", "y")], "test", source, input_shape=shape, num_classes=classes, recipe={"input": {}})
        module = _run_source(text, Path("/nonexistent/model.py"))
        ours, theirs = module.build_model(), build_model(space, spec, shape, classes)
        facts = type("F", (), {"candidate_id": "c", "input_shape": shape})()
        _check_same_network(ours, theirs, facts)  # keys, shapes, dtypes, parameter count, outputs (allclose)
        x = torch.randn(2, *shape)
        with torch.no_grad():
            assert torch.equal(ours(x), theirs(x)), (space, arch_string(spec) if space == "nb201" else spec)
