"""The network builders: a `layers` net is exactly the network its space counts, an `nb201`
net is the NAS-Bench-201 skeleton, and both run on CIFAR-sized and digits-sized inputs."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest
import torch
from torch import nn

from evaluator.errors import SpecError
from evaluator.models import build_model
from evaluator.models.nb201_net import Nb201Net
from evaluator.spaces import get_space
from evaluator.spaces.nb201 import EDGE_FIELDS, OPS, arch_string
from tests.conftest import ROOT

SHAPES = [(1, 8, 8), (3, 32, 32)]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def hooked_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates per image of every conv and linear layer, measured in a forward pass."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        per_image = output.numel() // output.shape[0]
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            total += per_image * (module.in_channels // module.groups) * k
        else:
            total += per_image * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    model.eval()
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return total


# --- layers -------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_sampled_layers_nets_match_the_analytic_counts_and_shapes(shape):
    space = get_space("layers", input_shape=shape, num_classes=10)
    rng = random.Random(sum(shape))
    torch.manual_seed(0)
    for _ in range(40):
        spec = space.sample(rng)
        stats = space.stats(spec)
        model = build_model("layers", spec, shape, 10)
        assert n_params(model) == stats["params"], space.summary(spec)
        x = torch.randn(2, *shape)
        assert hooked_macs(model, x) == stats["flops"], space.summary(spec)
        seen: list[list[int]] = []

        def record(module, inputs, output, seen=seen):
            seen.append(list(output.shape[1:]))

        handles = [st.register_forward_hook(record) for st in model.stages]
        with torch.no_grad():
            out = model(x)
        for h in handles:
            h.remove()
        assert out.shape == (2, 10) and torch.isfinite(out).all()
        assert seen == stats["stage_shapes"]
        assert list(model.stem(x).shape[1:]) == stats["stem_shape"]


@pytest.mark.parametrize("block", ["plain", "dwsep", "residual", "bottleneck"])
@pytest.mark.parametrize("norm", ["batch", "group", "none"])
def test_every_block_and_norm_counts_exactly(block, norm):
    space = get_space("layers", input_shape=(3, 9, 9), num_classes=7)
    for stride, expansion, channels in ((1, 1, 16), (2, 3, 24), (1, 6, 32)):
        spec = space.validate({"stem": {"channels": 16, "norm": norm}, "head": {"hidden": 32, "dropout": 0.1},
                               "stages": [{"block": block, "channels": channels, "depth": 2, "stride": stride,
                                           "norm": norm, "expansion": expansion, "dropout": 0.1, "pool": "avg",
                                           "kernel": 5, "activation": "hardswish"}]})
        model = build_model("layers", spec, (3, 9, 9), 7)
        stats = space.stats(spec)
        assert n_params(model) == stats["params"]
        assert hooked_macs(model, torch.randn(1, 3, 9, 9)) == stats["flops"]


def test_the_hand_computed_example_builds_to_its_counts():
    space = get_space("layers", input_shape=(1, 8, 8), num_classes=10)
    spec = {"stem": {"channels": 8}, "stages": [{"channels": 16, "stride": 2}]}
    model = build_model("layers", spec, (1, 8, 8), 10)
    assert n_params(model) == 1442 == space.stats(spec)["params"]
    assert hooked_macs(model, torch.randn(1, 1, 8, 8)) == 23200
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.stride, c.padding, c.bias is None) for c in convs] == [
        (1, 8, (1, 1), (1, 1), True), (8, 16, (2, 2), (1, 1), True)]


def test_layers_net_builds_from_a_short_spec_and_keeps_the_normalised_one():
    model = build_model("layers", {"stages": [{"channels": 8}]}, (1, 8, 8), 3)
    assert model.spec["training"]["optimizer"] == "sgd" and model(torch.randn(4, 1, 8, 8)).shape == (4, 3)


def test_layers_net_rejects_an_invalid_spec_with_the_field():
    with pytest.raises(SpecError) as info:
        build_model("layers", {"stages": [{"channels": 8, "pool": "max"}] * 4}, (1, 8, 8), 10)
    assert info.value.field == "stages.3.pool"


def test_layers_net_runs_channels_last_and_in_train_mode():
    space = get_space("layers", input_shape=(3, 32, 32), num_classes=10)
    spec = space.sample(random.Random(4))
    model = build_model("layers", spec, (3, 32, 32), 10).to(memory_format=torch.channels_last)
    out = model.train()(torch.randn(4, 3, 32, 32).to(memory_format=torch.channels_last))
    out.sum().backward()
    assert out.shape == (4, 10)


def test_a_sampled_layers_model_learns_on_random_data():
    torch.manual_seed(0)
    space = get_space("layers", input_shape=(1, 8, 8), num_classes=4)
    spec = space.validate({"stages": [{"channels": 16, "block": "residual"}, {"channels": 32, "stride": 2}]})
    model = build_model("layers", spec, (1, 8, 8), 4)
    x, y = torch.randn(64, 1, 8, 8), torch.randint(0, 4, (64,))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(30):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]


# --- nb201 ----------------------------------------------------------------------------------

CELLS = [
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|",
    "|nor_conv_1x1~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|",
    "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|",
]
ALL_NONE = arch_string(dict.fromkeys(EDGE_FIELDS, "none"))


@pytest.mark.parametrize("shape,out_hw", [((3, 32, 32), (8, 8)), ((1, 8, 8), (2, 2))])
@pytest.mark.parametrize("arch", CELLS + [ALL_NONE])
def test_nb201_net_runs_on_cifar_and_digits_shapes(arch, shape, out_hw):
    model = build_model("nb201", arch, shape, 10, channels=8, cells=1)
    assert model.output_hw == out_hw
    out = model(torch.randn(3, *shape))
    assert out.shape == (3, 10) and torch.isfinite(out).all()


def test_an_all_none_cell_still_gives_logits_of_the_right_shape_and_trains():
    model = build_model("nb201", ALL_NONE, (1, 8, 8), 5, channels=8, cells=2)
    out = model(torch.randn(4, 1, 8, 8))
    assert out.shape == (4, 5)
    out.sum().backward()  # gradients flow through the reduction blocks


def test_nb201_default_size_is_the_papers():
    conv = arch_string(dict.fromkeys(EDGE_FIELDS, "nor_conv_3x3"))
    model = build_model("nb201", conv, (3, 32, 32), 10)
    assert sum(isinstance(m, nn.Module) and type(m).__name__ == "Cell" for m in model.modules()) == 15
    # NAS-Bench-201 reports 0.07 M to 1.53 M parameters for its CIFAR-10 networks.
    assert round(n_params(model) / 1e6, 2) == 1.53
    assert round(n_params(build_model("nb201", ALL_NONE, (3, 32, 32), 10)) / 1e6, 2) == 0.07
    assert model.classifier.in_features == 64


def test_nb201_accepts_every_spec_form_and_ops_map_to_modules():
    spec = dict(zip(EDGE_FIELDS, OPS + ("nor_conv_3x3",)))
    a = build_model("nb201", spec, (3, 16, 16), 10, channels=4, cells=1)
    b = build_model("nb201", {"arch": arch_string(spec)}, (3, 16, 16), 10, channels=4, cells=1)
    assert n_params(a) == n_params(b) and a.spec == b.spec == spec
    cell = a.cells[0]
    assert set(cell.ops) == {"2_0", "2_1", "3_0", "3_1", "3_2"}  # edge 1<-0 is 'none': no module
    assert isinstance(cell.ops["2_0"], nn.Identity) and isinstance(cell.ops["3_1"], nn.AvgPool2d)
    assert [type(m).__name__ for m in cell.ops["2_1"]] == ["ReLU", "Conv2d", "BatchNorm2d"]
    assert cell.ops["2_1"][1].kernel_size == (1, 1) and cell.ops["3_0"][1].kernel_size == (3, 3)


@pytest.mark.parametrize("shape,out_hw", [((1, 7, 7), (2, 2)), ((3, 2, 2), (1, 1)), ((3, 1, 1), (1, 1)),
                                          ((2, 30, 5), (8, 2))])
def test_nb201_reductions_round_up_and_never_shrink_below_1x1(shape, out_hw):
    model = build_model("nb201", CELLS[0], shape, 3, channels=4, cells=1)
    assert model.output_hw == out_hw and model(torch.randn(2, *shape)).shape == (2, 3)


def test_nb201_bad_spec_and_options():
    with pytest.raises(SpecError):
        build_model("nb201", {"edge_1_0": "conv"}, (3, 32, 32), 10)
    with pytest.raises(ValueError):
        Nb201Net(CELLS[0], (3, 32, 32), 10, channels=0)


def test_nb201_net_trains_a_few_steps():
    torch.manual_seed(1)
    model = build_model("nb201", CELLS[0], (1, 8, 8), 4, channels=8, cells=1)
    x, y = torch.randn(32, 1, 8, 8), torch.randint(0, 4, (32,))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    first = None
    for _ in range(20):
        loss = nn.functional.cross_entropy(model(x), y)
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.7 * first


# --- dispatch and isolation -------------------------------------------------------------------


def test_build_model_rejects_unknown_spaces_and_layers_options():
    with pytest.raises(ValueError) as info:
        build_model("transformer", {}, (3, 32, 32), 10)
    assert "'transformer'" in str(info.value) and "'code'" in str(info.value)
    with pytest.raises(TypeError, match="path"):  # a model file is imported only when it is named
        build_model("code", {}, (3, 32, 32), 10)
    with pytest.raises(TypeError):
        build_model("layers", {"stages": [{"channels": 8}]}, (1, 8, 8), 10, channels=8)


def test_models_import_nothing_from_agent_or_sandbox():
    code = ("import sys; from evaluator.models import build_model; "
            "build_model('layers', {'stages': [{'channels': 8}]}, (1, 8, 8), 2); "
            "build_model('nb201', '" + CELLS[0] + "', (1, 8, 8), 2, channels=4, cells=1); "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('agent', 'sandbox')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)
