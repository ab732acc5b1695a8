"""Zero-cost proxies: finite scores on real networks, the caller's model left untouched,
seeded determinism, the orderings the proxies exist for (no path < a path, wide > narrow),
hand-checked values, errors that name the input and the fix, and the benchmark script."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from evaluator.models import build_model
from evaluator.measure.proxies import PROXY_NAMES, ProxyError, compute_proxies, spearman, synthetic_batch
from tests.conftest import ROOT

SHAPE = (3, 16, 16)  # CIFAR-shaped, smaller: keeps the file fast on 2 cores
ALL_CONV = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
MIXED = "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"


def small_cnn(width: int = 8, dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1, stride=2, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(width, 10),
    )


def nb201(arch: str = MIXED, channels: int = 4) -> nn.Module:
    torch.manual_seed(0)
    return build_model("nb201", arch, SHAPE, 10, channels=channels, cells=1)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny networks: one thread is fastest, and on a loaded 2-core machine it avoids oversubscription."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    return synthetic_batch(SHAPE, 10, batch_size=8, seed=0)


# --- every proxy on real networks -----------------------------------------------------------

@pytest.mark.parametrize("make", [small_cnn, nb201], ids=["small_cnn", "nb201_cell"])
def test_every_proxy_returns_a_finite_float(make, batch):
    scores = compute_proxies(make(), *batch)
    assert list(scores) == list(PROXY_NAMES)
    for name, value in scores.items():
        assert type(value) is float and math.isfinite(value), (name, value)
    assert scores["synflow"] > 0 and scores["grad_norm"] > 0 and scores["snip"] > 0


@pytest.mark.parametrize("mode", ["train", "eval", "mixed"])
def test_the_model_its_gradients_and_its_modes_are_left_as_they_were(mode, batch):
    model = nb201()
    model.train(mode != "eval")
    if mode == "mixed":
        model.cells[1].eval()  # a submodule in eval mode inside a model in train mode
    model.classifier.weight.grad = torch.full_like(model.classifier.weight, 0.5)
    model.stem[0].weight.requires_grad_(False)
    state = {k: v.clone() for k, v in model.state_dict().items()}  # weights and BatchNorm running statistics
    modes = {name: m.training for name, m in model.named_modules()}
    inputs, targets = batch
    inputs_before = inputs.clone()

    compute_proxies(model, inputs, targets)

    after = model.state_dict()
    assert state.keys() == after.keys()
    for key, value in state.items():
        assert torch.equal(value, after[key]), f"{key} changed"
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert torch.equal(model.classifier.weight.grad, torch.full_like(model.classifier.weight, 0.5))
    assert all(p.grad is None for name, p in model.named_parameters() if name != "classifier.weight")
    assert model.stem[0].weight.requires_grad is False
    assert next(model.parameters()).dtype == torch.float32  # synflow's float64 stayed on its copy
    assert torch.equal(inputs, inputs_before)


def test_the_callers_mode_does_not_change_the_scores(batch):
    """Each proxy sets the mode its definition asks for on its own copy."""
    model = small_cnn()
    in_train = compute_proxies(model.train(), *batch)
    in_eval = compute_proxies(model.eval(), *batch)
    assert in_train == in_eval


# --- determinism ----------------------------------------------------------------------------

def test_same_seed_same_scores_and_the_global_rng_is_untouched(batch):
    model = small_cnn(dropout=0.5)  # train-mode proxies run dropout: the seed decides its masks
    rng_before = torch.get_rng_state()
    first = compute_proxies(model, *batch, seed=3)
    assert torch.equal(torch.get_rng_state(), rng_before)
    torch.rand(100)  # moving the global RNG changes nothing
    assert compute_proxies(model, *batch, seed=3) == first
    assert compute_proxies(model, *batch, seed=4)["grad_norm"] != first["grad_norm"]
    # grad_norm and snip share one backward pass when asked together; alone they give the same values
    assert compute_proxies(model, *batch, names=["snip"], seed=3)["snip"] == first["snip"]


def test_synthetic_batch_is_fixed_by_its_seed():
    x1, y1 = synthetic_batch(SHAPE, 10, batch_size=16, seed=5)
    x2, y2 = synthetic_batch(SHAPE, 10, batch_size=16, seed=5)
    assert x1.shape == (16, *SHAPE) and y1.shape == (16,) and y1.dtype == torch.long
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert int(y1.min()) >= 0 and int(y1.max()) < 10
    assert not torch.equal(synthetic_batch(SHAPE, 10, batch_size=16, seed=6)[0], x1)


# --- the orderings the proxies exist for ----------------------------------------------------

def test_a_cell_with_no_path_scores_below_an_all_conv_cell_on_synflow(batch):
    no_path = compute_proxies(nb201(ALL_NONE), *batch, names=["synflow", "grad_norm"])
    all_conv = compute_proxies(nb201(ALL_CONV), *batch, names=["synflow", "grad_norm"])
    assert no_path["synflow"] == 0.0 < all_conv["synflow"]
    assert no_path["grad_norm"] < all_conv["grad_norm"]


def test_proxies_that_compare_inputs_are_undefined_without_a_path_and_say_why(batch):
    model = nb201(ALL_NONE)
    with pytest.raises(ProxyError, match="jacob_cov: the output does not depend") as err:
        compute_proxies(model, *batch, names=["jacob_cov"])
    assert err.value.proxy == "jacob_cov" and isinstance(err.value, ValueError)
    with pytest.raises(ProxyError, match="naswot: the activation kernel is singular"):
        compute_proxies(model, *batch, names=["naswot"])
    assert set(compute_proxies(model, *batch, errors="omit")) == {"synflow", "grad_norm", "snip"}


def test_a_wider_network_scores_higher_on_synflow(batch):
    narrow = compute_proxies(nb201(channels=4), *batch, names="synflow")["synflow"]
    wide = compute_proxies(nb201(channels=8), *batch, names="synflow")["synflow"]
    assert wide > narrow > 0


# --- values checked by hand -----------------------------------------------------------------

def test_naswot_is_the_log_determinant_of_the_agreement_kernel():
    # 4 units; the two inputs agree on units 0 and 3: K = [[4, 2], [2, 4]], log det = log 12
    x = torch.tensor([[1.0, 1.0, -1.0, -1.0], [1.0, -1.0, 1.0, -1.0]])
    assert compute_proxies(nn.Sequential(nn.ReLU()), x, names="naswot")["naswot"] == pytest.approx(math.log(12))


def test_grad_norm_and_snip_match_the_gradient_computed_by_hand():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))
    x, y = torch.randn(6, 5), torch.tensor([0, 1, 2, 0, 1, 2])
    nn.functional.cross_entropy(model(x), y).backward()
    weights = [model[0].weight, model[2].weight]
    scores = compute_proxies(model, x, y, names=["grad_norm", "snip"])
    assert scores["grad_norm"] == pytest.approx(sum(float(w.grad.norm()) for w in weights), rel=1e-6)
    assert scores["snip"] == pytest.approx(sum(float((w.detach() * w.grad).abs().sum()) for w in weights), rel=1e-6)


def test_synflow_removes_batchnorm(batch):
    with_bn = small_cnn()
    with torch.no_grad():  # BatchNorm that is far from the identity: removing it must ignore all of this
        for m in with_bn.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.fill_(3.0)
                m.bias.fill_(-2.0)
                m.running_mean.fill_(5.0)
                m.running_var.fill_(0.1)
    without_bn = nn.Sequential(*(nn.Identity() if isinstance(m, nn.BatchNorm2d) else m for m in small_cnn()))
    score = compute_proxies(with_bn, *batch, names="synflow")["synflow"]
    assert score == pytest.approx(compute_proxies(without_bn, *batch, names="synflow")["synflow"], rel=1e-12)


def test_synflow_runs_in_float64_where_float32_overflows():
    layers = []
    for _ in range(30):  # all-ones input, weights of 1/2 on 64 inputs: activations grow 32x per layer (1e45)
        layer = nn.Linear(64, 64, bias=False)
        nn.init.constant_(layer.weight, 0.5)
        layers.append(layer)
    model = nn.Sequential(*layers)
    score = compute_proxies(model, torch.randn(2, 64), names="synflow")["synflow"]
    assert math.isfinite(score) and score > torch.finfo(torch.float32).max
    assert model[0].weight.dtype == torch.float32


def test_spearman_ranks_ties_by_their_average_and_minus_infinity_last():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([-math.inf, 1, 2], [0, 5, 9]) == pytest.approx(1.0)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    stats = pytest.importorskip("scipy.stats")
    a, b = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3], [2, 7, 1, 8, 2, 8, 1, 8, 2, 8]
    assert spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic)


# --- errors a person can act on -------------------------------------------------------------

def test_an_unknown_proxy_name_lists_the_known_ones(batch):
    with pytest.raises(ValueError, match="unknown proxy 'synflw'.*did you mean 'synflow'") as err:
        compute_proxies(small_cnn(), *batch, names=["synflw"])
    assert all(name in str(err.value) for name in PROXY_NAMES)


@pytest.mark.parametrize("inputs, targets, names, message", [
    (torch.zeros(0, *SHAPE), torch.zeros(0, dtype=torch.long), PROXY_NAMES, "(?s)inputs is an empty batch.*at least 2"),
    (torch.zeros(8, *SHAPE), torch.zeros(5, dtype=torch.long), PROXY_NAMES,
     "(?s)targets has 5 labels but inputs has 8 examples.*one label per input"),
    (torch.zeros(8, *SHAPE), None, ["grad_norm"], "(?s)targets is None, but grad_norm needs the labels.*pass targets"),
    (torch.zeros(8, *SHAPE), torch.zeros(8), PROXY_NAMES, "(?s)integer class labels.*class indices"),
    (torch.zeros(1, *SHAPE), torch.zeros(1, dtype=torch.long), ["jacob_cov"], "(?s)1 example.*jacob_cov compares.*at least 2"),
    (torch.zeros(8, *SHAPE), torch.full((8,), 12), ["snip"], "(?s)label 12 is out of range.*0..9"),
    (torch.full((8, *SHAPE), math.nan), None, ["synflow"], "NaN or infinite"),
], ids=["empty", "wrong_length", "missing", "float_labels", "batch_of_one", "label_range", "nan"])
def test_bad_inputs_name_the_input_and_the_fix(inputs, targets, names, message):
    with pytest.raises(ValueError, match=message) as err:
        compute_proxies(small_cnn(), inputs, targets, names)
    assert "hint:" in str(err.value)


def test_omit_leaves_out_undefined_proxies_but_still_rejects_bad_arguments(batch):
    inputs, _ = batch
    with pytest.raises(ProxyError, match="label 12 is out of range"):
        compute_proxies(small_cnn(), inputs, torch.full((8,), 12), ["snip"], errors="omit")
    with pytest.raises(ProxyError, match="errors='skip' must be 'raise' or 'omit'"):
        compute_proxies(small_cnn(), *batch, errors="skip")


def test_a_network_without_weights_or_relus_names_the_proxy(batch):
    inputs, _ = batch
    with pytest.raises(ProxyError, match="synflow: the network has no Conv or Linear layer"):
        compute_proxies(nn.Flatten(), inputs, names="synflow")
    with pytest.raises(ProxyError, match="naswot: the network has no ReLU module"):
        compute_proxies(nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 10)), inputs, names="naswot")
    with pytest.raises(ProxyError, match=r"grad_norm: the model's forward pass failed on inputs of shape \(8, 3, 16, 16\)"):
        compute_proxies(nn.Linear(5, 10), *batch, names="grad_norm")


class _Constant(nn.Module):
    """Logits from the weights alone: the output does not depend on the input at all."""

    def __init__(self) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(10))
        self.fc = nn.Linear(10, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.logits).expand(x.shape[0], -1)


def test_a_model_whose_output_ignores_its_input_makes_jacob_cov_undefined_not_an_error(batch):
    """It used to raise AttributeError ('NoneType' object has no attribute 'reshape'), which
    failed the candidate in the worker before training."""
    with pytest.raises(ProxyError, match="jacob_cov: the output does not depend") as err:
        compute_proxies(_Constant(), *batch, names=["jacob_cov"])
    assert err.value.proxy == "jacob_cov"
    assert set(compute_proxies(_Constant(), *batch, errors="omit")) == {"synflow", "grad_norm", "snip"}


# --- the benchmark script -------------------------------------------------------------------

CURVE_COLUMNS = "arch_i,arch_str,grad_norm,snip,grasp,fisher,jacob_cov,plain,synflow_bn,synflow,train_accs,val_accs"


def write_curves(path: Path) -> Path:
    rows = [CURVE_COLUMNS]
    archs = [ALL_CONV, MIXED, ALL_NONE, "|skip_connect~0|+|nor_conv_1x1~0|none~1|+|avg_pool_3x3~0|none~1|nor_conv_1x1~2|"]
    for i, (arch, val) in enumerate(zip(archs, [90.5, 85.0, 9.7, 70.2])):
        proxies = ",".join(str(v * (i + 1)) for v in (1.5, 2.5, -0.1, 0.01, -70.0, 0.1, 3.0, 1e17))
        curve = json.dumps([val / 2, val])
        rows.append(f'{i},{arch},{proxies},"{curve}","{curve}"')
    rows.append(f'99,{MIXED},1,1,1,1,1,1,1,1,"[1]","[50.0]"')  # beyond --limit
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.mark.slow
def test_the_benchmark_script_scores_a_small_curves_file(tmp_path):
    doc = ROOT / "docs" / "benchmarks.md"
    doc_before = doc.read_text(encoding="utf-8") if doc.is_file() else None
    out = subprocess.run([sys.executable, "bench/proxies.py", "--curves", str(write_curves(tmp_path / "c.csv")),
                          "--limit", "4", "--channels", "4", "--cells", "1", "--batch-size", "8", "--threads", "1", "--no-write",
                          "--json", str(tmp_path / "raw.json")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "rho ours~file" in out.stdout and "target synflow ours~file >= 0.8" in out.stdout
    assert "cell 4/4" in out.stderr  # progress goes to stderr
    raw = json.loads((tmp_path / "raw.json").read_text())
    assert [c["arch_i"] for c in raw["cells"]] == [0, 1, 2, 3]
    rows = {r["proxy"]: r for r in raw["rows"]}
    assert set(PROXY_NAMES) | {"params", "grasp", "fisher", "plain", "synflow_bn"} == set(rows)
    assert rows["naswot"]["undefined"] == 1 and rows["jacob_cov"]["undefined"] == 1  # the all-'none' cell
    assert rows["synflow"]["cells"] == 4 and -1 <= rows["synflow"]["ours_vs_val"] <= 1
    assert raw["cells"][2]["scores"]["synflow"] == 0.0 and raw["cells"][2]["scores"]["naswot"] is None
    assert (doc.read_text(encoding="utf-8") if doc.is_file() else None) == doc_before  # --no-write


def test_the_benchmark_script_names_a_missing_curves_file(tmp_path):
    missing = tmp_path / "nope.csv"
    out = subprocess.run([sys.executable, "bench/proxies.py", "--curves", str(missing), "--no-write"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert str(missing) in out.stderr and "--curves" in out.stderr
