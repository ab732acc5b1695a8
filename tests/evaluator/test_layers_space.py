"""The `layers` space: schema, defaults, static shape / parameter / FLOP checks, limits,
sample, mutate, canonical keys, and the task information every space now receives.

Why one module of this length: every test here checks one space through the same helpers (the
spec builders at the top), as the space's package (evaluator/spaces/layers/) is one unit of four
modules; the contract every space shares is in test_space_contract.py."""

from __future__ import annotations

import copy
import json
import random
from collections import Counter

import pytest

from evaluator.errors import SpecError, UserInputError
from evaluator.spaces import SPACES, SearchSpace, get_space
from evaluator.spaces.layers import LayersSpace, group_norm_groups
from evaluator.spaces.nb201 import Nb201Space

DIGITS = {"input_shape": (1, 8, 8), "num_classes": 10}
CIFAR = {"input_shape": (3, 32, 32), "num_classes": 10}

FULL_DEFAULTS = {
    "stem": {"channels": 32, "kernel": 3, "stride": 1, "norm": "batch", "activation": "relu"},
    "stages": [{"block": "plain", "channels": 24, "depth": 1, "kernel": 3, "stride": 1, "norm": "batch",
                "activation": "relu", "dropout": 0.0, "pool": "none", "expansion": 4}],
    "head": {"hidden": 0, "dropout": 0.0},
    "training": {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "schedule": "cosine", "warmup_epochs": 0,
                 "weight_decay": 5e-4, "batch_size": 64, "label_smoothing": 0.0, "augmentation": "none"},
}


@pytest.fixture
def space() -> LayersSpace:
    return get_space("layers", **DIGITS)


def short(*stages: dict, **top) -> dict:
    return {"stages": [dict(s) for s in stages], **top}


# --- registry and task information -------------------------------------------------------


def test_get_space_passes_the_task_shape_and_limits():
    s = get_space("layers", input_shape=(3, 32, 32), num_classes=100, max_params=1000, max_flops=2000)
    assert isinstance(s, LayersSpace) and isinstance(s, SearchSpace) and "layers" in SPACES
    assert (s.input_shape, s.num_classes, s.max_params, s.max_flops) == ((3, 32, 32), 100, 1000, 2000)


def test_get_space_without_task_information_still_works_for_both_spaces():
    nb = get_space("nb201")
    assert isinstance(nb, Nb201Space) and nb.input_shape is None and nb.num_classes is None
    layers = get_space("layers")
    assert layers.input_shape is None and "bottleneck" in layers.describe()
    assert layers.proposal_schema.model_json_schema()["title"] == "LayersSpec"


def test_nb201_accepts_task_information_and_ignores_it():
    s = get_space("nb201", input_shape=(3, 32, 32), num_classes=10)
    assert s.input_shape == (3, 32, 32) and s.stats(s.sample(random.Random(0))) == {}


@pytest.mark.parametrize("kwargs", [{"input_shape": (0, 8, 8)}, {"input_shape": ()}, {"num_classes": 0},
                                    {"max_params": -1}, {"max_flops": 1.5}])
def test_bad_task_information_is_a_value_error_naming_it(kwargs):
    with pytest.raises(ValueError) as info:
        get_space("layers", **kwargs)
    assert next(iter(kwargs)) in str(info.value)


def test_layers_needs_image_inputs():
    with pytest.raises(UserInputError) as info:
        get_space("layers", input_shape=(64,), num_classes=10)
    assert "(C, H, W)" in info.value.message and "(64,)" in info.value.message and info.value.hint


@pytest.mark.parametrize("call", ["validate", "sample", "stats"])
def test_validate_sample_and_stats_need_the_task(call):
    s = get_space("layers")
    arg = random.Random(0) if call == "sample" else short({"channels": 16})
    with pytest.raises(UserInputError) as info:
        getattr(s, call)(arg)
    assert not isinstance(info.value, SpecError)  # not the proposal's fault: no repair loop
    assert "input shape" in info.value.message and "num_classes" in info.value.hint


# --- schema -------------------------------------------------------------------------------


def _walk_schema(schema: dict):
    defs = schema.get("$defs", {})
    for model in [schema, *defs.values()]:
        for name, prop in model.get("properties", {}).items():
            yield model["title"], name, prop


def test_every_field_is_described_and_bounded_for_constrained_decoding(space):
    schema = space.proposal_schema.model_json_schema()
    seen = 0
    for model, name, prop in _walk_schema(schema):
        seen += 1
        assert prop.get("description"), f"{model}.{name} has no description"
        if "$ref" in prop or "default" in prop and isinstance(prop["default"], dict):
            continue
        if prop.get("type") == "array":
            assert prop["minItems"] == 1 and prop["maxItems"] == 6
        elif "anyOf" in prop:
            assert all("const" in o or ("minimum" in o and "maximum" in o) for o in prop["anyOf"]), (model, name)
        elif "enum" not in prop and "const" not in prop:
            assert prop["type"] in ("integer", "number") and "minimum" in prop and "maximum" in prop, (model, name)
        if model != "LayersSpec" and "default" not in prop:
            assert (model, name) == ("Stage", "channels"), f"{model}.{name} has no default"
    assert seen == 5 + 10 + 2 + 9 + 4
    for model in schema["$defs"].values():
        assert model["additionalProperties"] is False


def test_the_schema_states_the_bounds_of_the_brief(space):
    defs = space.proposal_schema.model_json_schema()["$defs"]
    stem, stage, head, tr = defs["Stem"]["properties"], defs["Stage"]["properties"], defs["Head"]["properties"], \
        defs["Training"]["properties"]
    assert (stem["channels"]["minimum"], stem["channels"]["maximum"]) == (8, 256)
    assert (stage["channels"]["minimum"], stage["channels"]["maximum"]) == (8, 512)
    assert (stage["depth"]["minimum"], stage["depth"]["maximum"]) == (1, 6)
    assert stage["kernel"]["enum"] == [1, 3, 5, 7] and stage["stride"]["enum"] == [1, 2]
    assert stage["block"]["enum"] == ["plain", "dwsep", "residual", "bottleneck"]
    assert stage["pool"]["enum"] == ["none", "max", "avg"] and stage["norm"]["enum"] == ["batch", "group", "none"]
    assert stage["activation"]["enum"] == ["relu", "gelu", "silu", "hardswish"]
    assert (stage["expansion"]["minimum"], stage["expansion"]["maximum"]) == (1, 6)
    assert head["hidden"]["anyOf"] == [{"type": "integer", "const": 0},
                                       {"type": "integer", "minimum": 16, "maximum": 1024}]
    assert tr["batch_size"]["enum"] == [16, 32, 64, 128, 256, 512]
    assert (tr["lr"]["minimum"], tr["lr"]["maximum"]) == (1e-5, 1.0)
    assert tr["augmentation"]["enum"] == ["none", "flip", "crop", "crop_flip"]
    assert "epochs" not in tr  # epochs are the fidelity, not part of the proposal


def test_a_short_spec_gets_every_default(space):
    out = space.validate(short({"channels": 24}))
    assert out == FULL_DEFAULTS
    assert json.loads(json.dumps(out)) == out  # JSON-able


def test_validate_does_not_modify_its_input(space):
    spec = short({"channels": 24, "block": "residual"})
    before = copy.deepcopy(spec)
    space.validate(spec)
    assert spec == before


def test_fields_that_do_not_apply_are_reset_to_their_defaults(space):
    out = space.validate(short({"channels": 16, "block": "plain", "expansion": 6},
                               training={"optimizer": "adam", "lr": 0.001, "momentum": 0.5}))
    assert out["stages"][0]["expansion"] == 4 and out["training"]["momentum"] == 0.9
    kept = space.validate(short({"channels": 16, "block": "bottleneck", "expansion": 6},
                                training={"optimizer": "sgd", "momentum": 0.5}))
    assert kept["stages"][0]["expansion"] == 6 and kept["training"]["momentum"] == 0.5


BAD_FIELDS = [
    (short({"channels": 16}, stem={"channels": 7}), "stem.channels"),
    (short({"channels": 16}, stem={"channels": 257}), "stem.channels"),
    (short({"channels": 513}), "stages.0.channels"),
    (short({"channels": 16}, {"channels": 16, "depth": 7}), "stages.1.depth"),
    (short({"channels": 16, "depth": 0}), "stages.0.depth"),
    (short({"channels": 16, "kernel": 2}), "stages.0.kernel"),
    (short({"channels": 16, "stride": 3}), "stages.0.stride"),
    (short({"channels": 16, "dropout": 0.6}), "stages.0.dropout"),
    (short({"channels": 16, "expansion": 7, "block": "bottleneck"}), "stages.0.expansion"),
    (short({"channels": 16, "block": "dense"}), "stages.0.block"),
    (short({"channels": 16, "pool": "global"}), "stages.0.pool"),
    (short({"channels": 16}, head={"hidden": 8}), "head.hidden"),
    (short({"channels": 16}, head={"hidden": 2048}), "head.hidden"),
    (short({"channels": 16}, head={"dropout": -0.1}), "head.dropout"),
    (short({"channels": 16}, training={"lr": 2.0}), "training.lr"),
    (short({"channels": 16}, training={"lr": 0.0}), "training.lr"),
    (short({"channels": 16}, training={"momentum": 1.0}), "training.momentum"),
    (short({"channels": 16}, training={"batch_size": 100}), "training.batch_size"),
    (short({"channels": 16}, training={"warmup_epochs": 6}), "training.warmup_epochs"),
    (short({"channels": 16}, training={"weight_decay": 0.2}), "training.weight_decay"),
    (short({"channels": 16}, training={"label_smoothing": 0.31}), "training.label_smoothing"),
    (short({"channels": 16}, training={"optimizer": "lion"}), "training.optimizer"),
    (short({"channels": 16}, training={"epochs": 10}), "training.epochs"),
    (short(*[{"channels": 16}] * 7), "stages"),
    ({"stages": []}, "stages"),
    ({}, "stages"),
    (short({"depth": 2}), "stages.0.channels"),
]


@pytest.mark.parametrize("spec,field", BAD_FIELDS, ids=[f for _, f in BAD_FIELDS])
def test_out_of_bounds_fields_are_named(space, spec, field):
    with pytest.raises(SpecError) as info:
        space.validate(spec)
    assert info.value.field == field
    assert field in info.value.message


def test_head_hidden_gap_message_says_what_is_allowed(space):
    with pytest.raises(SpecError) as info:
        space.validate(short({"channels": 16}, head={"hidden": 8}))
    assert "0 (no hidden layer) or 16..1024" in info.value.message


def test_misspelled_key_suggests_the_field(space):
    with pytest.raises(SpecError) as info:
        space.validate(short({"channels": 16, "kernal": 3}))
    assert info.value.field == "stages.0.kernal" and "did you mean 'kernel'" in info.value.message


def test_unknown_choice_suggests_the_closest(space):
    with pytest.raises(SpecError) as info:
        space.validate(short({"channels": 16, "block": "residul"}))
    assert "did you mean 'residual'" in info.value.message


# --- static shape inference ---------------------------------------------------------------


def test_shapes_follow_strides_and_pooling(space):
    spec = space.validate(short({"channels": 16, "stride": 2}, {"channels": 32, "pool": "max"},
                                {"channels": 48, "stride": 2}, {"channels": 64}))
    st = space.stats(spec)
    assert st["stem_shape"] == [32, 8, 8]
    assert st["stage_shapes"] == [[16, 4, 4], [32, 2, 2], [48, 1, 1], [64, 1, 1]]
    assert st["input_shape"] == [1, 8, 8] and st["output_shape"] == [10]


def test_odd_sizes_round_up_for_stride_and_down_for_pooling():
    s = get_space("layers", input_shape=(3, 7, 5), num_classes=4)
    st = s.stats(s.validate(short({"channels": 8, "stride": 2}, {"channels": 8, "pool": "avg"})))
    assert st["stage_shapes"] == [[8, 4, 3], [8, 2, 1]]


def test_stride_that_shrinks_1x1_maps_names_the_stage_and_the_fix(space):
    spec = short({"channels": 16, "stride": 2}, {"channels": 16, "stride": 2}, {"channels": 16, "stride": 2},
                 {"channels": 16, "stride": 2})  # 8 -> 4 -> 2 -> 1 -> error
    with pytest.raises(SpecError) as info:
        space.validate(spec)
    err = info.value
    assert err.field == "stages.3.stride"
    assert err.message.startswith("stages.3.stride: stride 2 would shrink 1x1 feature maps below 1x1")
    assert "use stride 1 or remove a pooling earlier" in err.message and "1x8x8" in err.hint


def test_pooling_that_shrinks_1x1_maps_names_the_stage(space):
    spec = short({"channels": 16, "pool": "max"}, {"channels": 16, "pool": "avg"}, {"channels": 16, "pool": "max"},
                 {"channels": 16, "pool": "avg"})  # 8 -> 4 -> 2 -> 1 -> error
    with pytest.raises(SpecError) as info:
        space.validate(spec)
    assert info.value.field == "stages.3.pool" and "avg pooling would shrink 1x1" in info.value.message


def test_stem_stride_on_a_one_pixel_input_is_named():
    s = get_space("layers", input_shape=(3, 1, 1), num_classes=2)
    with pytest.raises(SpecError) as info:
        s.validate(short({"channels": 8}, stem={"stride": 2}))
    assert info.value.field == "stem.stride"
    assert s.validate(short({"channels": 8}))["stem"]["stride"] == 1  # stride 1 is fine on 1x1


def test_a_stride_on_one_narrow_axis_is_an_error_too():
    s = get_space("layers", input_shape=(1, 1, 16), num_classes=2)
    with pytest.raises(SpecError) as info:
        s.validate(short({"channels": 8, "stride": 2}))
    assert info.value.field == "stages.0.stride" and "1x16 feature maps" in info.value.message


def test_the_same_spec_fits_a_larger_input():
    spec = short(*[{"channels": 16, "stride": 2}] * 4)
    assert get_space("layers", **CIFAR).validate(spec)["stages"][3]["stride"] == 2


# --- parameter and FLOP counts --------------------------------------------------------------


def test_counts_of_a_hand_computed_network(space):
    # stem conv 1->8 k3 on 8x8 (+BN); plain conv 8->16 k3 stride 2 -> 4x4 (+BN); linear 16->10.
    spec = space.validate(short({"channels": 16, "stride": 2}, stem={"channels": 8}))
    st = space.stats(spec)
    assert st["params_by_part"] == {"stem": 1 * 8 * 9 + 2 * 8, "stages.0": 8 * 16 * 9 + 2 * 16, "head": 16 * 10 + 10}
    assert st["params"] == 88 + 1184 + 170 == 1442
    # MACs: H_out * W_out * C_out * C_in * k * k per conv, in * out per linear (1 MAC = 1 FLOP).
    assert st["flops_by_part"] == {"stem": 8 * 8 * 8 * 1 * 9, "stages.0": 4 * 4 * 16 * 8 * 9, "head": 16 * 10}
    assert st["flops"] == 4608 + 18432 + 160 == 23200


def test_counts_of_hand_computed_blocks():
    s = get_space("layers", input_shape=(4, 4, 4), num_classes=2)
    stem = {"channels": 8, "kernel": 1, "norm": "none"}  # 8*4 + 8 params, 16*8*4 MACs

    def stage(**kw):
        return s.stats(s.validate(short(dict({"channels": 16}, **kw), stem=stem)))["params_by_part"]["stages.0"]

    assert stage(block="plain", norm="none") == 8 * 16 * 9 + 16
    assert stage(block="dwsep") == (8 * 9 + 16) + (8 * 16 + 32)
    assert stage(block="residual") == (8 * 16 * 9 + 32) + (16 * 16 * 9 + 32) + (8 * 16 + 32)
    assert stage(block="residual", depth=2) == 3680 + 16 * 16 * 9 * 2 + 2 * 32  # second block: identity shortcut
    assert stage(block="bottleneck", expansion=2) == (8 * 16 + 32) + (16 * 9 + 32) + (16 * 16 + 32)
    assert stage(block="bottleneck", expansion=1) == (8 * 9 + 16) + (8 * 16 + 32)
    assert stage(block="plain", norm="group") == 8 * 16 * 9 + 32
    flops = s.stats(s.validate(short({"channels": 16, "block": "dwsep", "stride": 2}, stem=stem)))["flops_by_part"]
    assert flops["stem"] == 16 * 8 * 4 and flops["stages.0"] == 2 * 2 * 8 * 9 + 2 * 2 * 16 * 8


def test_head_hidden_layer_counts():
    s = get_space("layers", input_shape=(1, 4, 4), num_classes=3)
    st = s.stats(s.validate(short({"channels": 16}, head={"hidden": 32, "dropout": 0.2})))
    assert st["params_by_part"]["head"] == 16 * 32 + 32 + 32 * 3 + 3
    assert st["flops_by_part"]["head"] == 16 * 32 + 32 * 3


def test_group_norm_groups_rule():
    assert [group_norm_groups(c) for c in (8, 16, 24, 64, 100, 256, 512, 13)] == [1, 2, 3, 8, 4, 32, 32, 1]


# --- limits -----------------------------------------------------------------------------------


def test_max_params_names_the_count_the_limit_and_what_to_shrink():
    s = get_space("layers", **DIGITS, max_params=10_000)
    spec = short({"channels": 16}, {"channels": 128, "block": "residual"})
    with pytest.raises(SpecError) as info:
        s.validate(spec)
    count = get_space("layers", **DIGITS).stats(spec)["params"]
    err = info.value
    assert f"{count:,} parameters" in err.message and "10,000" in err.message and "max_params" in err.message
    assert err.field == "stages.1" and "stages.1" in err.hint and "channels" in err.hint


def test_max_flops_names_the_count_the_limit_and_what_to_shrink():
    s = get_space("layers", **CIFAR, max_flops=5_000_000)
    spec = short({"channels": 64, "depth": 2}, {"channels": 32, "stride": 2})
    with pytest.raises(SpecError) as info:
        s.validate(spec)
    err = info.value
    assert "5,000,000" in err.message and "max_flops" in err.message and err.field == "stages.0"
    assert "stride 2" in err.hint


def test_limits_allow_specs_at_the_limit():
    spec = short({"channels": 16, "stride": 2}, stem={"channels": 8})
    assert get_space("layers", **DIGITS, max_params=1442, max_flops=23200).validate(spec)
    with pytest.raises(SpecError):
        get_space("layers", **DIGITS, max_params=1441).validate(spec)


# --- sample -----------------------------------------------------------------------------------


def test_sample_is_valid_and_seeded_reproducibly(space):
    a = [space.sample(random.Random(7)) for _ in range(3)]
    assert a[0] == a[1] == a[2]
    rng = random.Random(1)
    specs = [space.sample(rng) for _ in range(40)]
    assert len({space.canonical_key(s) for s in specs}) == 40
    for s in specs:
        assert space.validate(s) == s


def test_sample_covers_the_space_and_favours_small_networks(space):
    rng = random.Random(3)
    specs = [space.sample(rng) for _ in range(300)]
    stages = [st for s in specs for st in s["stages"]]
    assert set(Counter(st["block"] for st in stages)) == {"plain", "dwsep", "residual", "bottleneck"}
    assert set(Counter(st["norm"] for st in stages)) == {"batch", "group", "none"}
    assert set(Counter(st["pool"] for st in stages)) == {"none", "max", "avg"}
    assert set(Counter(s["training"]["optimizer"] for s in specs)) == {"sgd", "adam", "adamw"}
    assert set(Counter(s["training"]["augmentation"] for s in specs)) == {"none", "flip", "crop", "crop_flip"}
    assert {len(s["stages"]) for s in specs} >= {1, 2, 3, 4, 5}
    flops = sorted(space.stats(s)["flops"] for s in specs)
    assert flops[len(flops) // 2] < 4_000_000  # the median trains in seconds on digits
    assert max(flops) > 4_000_000  # but larger networks still appear


def test_sample_respects_limits():
    s = get_space("layers", **CIFAR, max_params=20_000, max_flops=2_000_000)
    rng = random.Random(0)
    for _ in range(20):
        st = s.stats(s.sample(rng))
        assert st["params"] <= 20_000 and st["flops"] <= 2_000_000


# --- mutate -----------------------------------------------------------------------------------

# Fields reset by normalisation when the field they depend on changes.
DEPENDENT = {("block",): "expansion", ("optimizer",): "momentum"}


def leaf_diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for k, value in a.items():
        if isinstance(value, dict):
            out += leaf_diff(value, b[k], f"{prefix}{k}.")
        elif value != b[k]:
            out.append(f"{prefix}{k}")
    return out


def one_edit(parent: dict, child: dict) -> str:
    """Describe the single edit from parent to child, or fail."""
    ps, cs = parent["stages"], child["stages"]
    rest_equal = all(parent[k] == child[k] for k in ("stem", "head", "training"))
    if len(cs) == len(ps) + 1:
        assert rest_equal and any(cs[:i] + cs[i + 1:] == ps for i in range(len(cs))), "not a single added stage"
        return "add"
    if len(cs) == len(ps) - 1:
        assert rest_equal and any(ps[:i] + ps[i + 1:] == cs for i in range(len(ps))), "not a single removed stage"
        return "remove"
    diffs = leaf_diff({k: v for k, v in parent.items() if k != "stages"}, {k: v for k, v in child.items() if k != "stages"})
    for i, (p, c) in enumerate(zip(ps, cs)):
        diffs += [f"stages.{i}.{f}" for f in leaf_diff(p, c)]
    assert diffs, "child equals parent"
    if len(diffs) == 2:  # a field and the field that normalisation resets with it
        names = sorted(d.rsplit(".", 1)[-1] for d in diffs)
        same_place = len({d.rsplit(".", 1)[0] for d in diffs}) == 1
        assert same_place and names in (["block", "expansion"], ["momentum", "optimizer"]), diffs
        return diffs[0].rsplit(".", 1)[-1] if names[0] != "expansion" else "block"
    assert len(diffs) == 1, diffs
    return diffs[0].rsplit(".", 1)[-1]


def test_mutate_makes_one_valid_edit_and_always_differs(space):
    rng = random.Random(11)
    kinds = Counter()
    for _ in range(60):
        parent = space.sample(rng)
        for _ in range(5):
            child = space.mutate(parent, rng)
            assert space.validate(child) == child
            assert space.canonical_key(child) != space.canonical_key(parent)
            kinds[one_edit(parent, child)] += 1
            parent = child
    assert {"add", "remove", "channels", "depth", "block", "lr"} <= set(kinds), kinds
    assert len(kinds) >= 15, kinds


def test_mutate_leaves_the_parent_untouched_and_is_seeded(space):
    parent = space.sample(random.Random(2))
    before = copy.deepcopy(parent)
    a = space.mutate(parent, random.Random(5))
    b = space.mutate(parent, random.Random(5))
    assert a == b and parent == before


def test_mutate_of_a_minimal_spec_and_of_a_full_one(space):
    rng = random.Random(0)
    tiny = space.validate(short({"channels": 8}, stem={"channels": 8}))
    full = space.validate(short(*[{"channels": 16, "pool": "none"}] * 6))
    for parent in (tiny, full):
        for _ in range(30):
            child = space.mutate(parent, rng)
            one_edit(parent, child)
            assert 1 <= len(child["stages"]) <= 6


def test_mutate_stays_within_limits():
    s = get_space("layers", **DIGITS, max_params=30_000)
    rng = random.Random(4)
    parent = s.sample(rng)
    for _ in range(40):
        parent = s.mutate(parent, rng)
        assert s.stats(parent)["params"] <= 30_000


def test_mutate_on_a_tight_budget_and_a_1x1_input_stays_valid():
    s = get_space("layers", input_shape=(1, 1, 1), num_classes=2)
    spec = s.validate(short({"channels": 8}, stem={"channels": 8}))
    s = get_space("layers", input_shape=(1, 1, 1), num_classes=2, max_params=s.stats(spec)["params"])
    rng = random.Random(0)
    for _ in range(20):
        child = s.mutate(spec, rng)
        one_edit(spec, child)
        assert s.validate(child) == child


def test_mutate_falls_back_to_a_training_edit_when_no_edit_applies(space, monkeypatch):
    from evaluator.spaces.layers import edits, space as space_module

    monkeypatch.setattr(space_module, "EDITS", ((edits._edit_add_stage, 1),))  # a full network cannot grow
    parent = space.validate(short(*[{"channels": 16}] * 6))
    child = space.mutate(parent, random.Random(0))
    assert leaf_diff(parent, child) == ["training.augmentation"]


# --- canonical key, text --------------------------------------------------------------------


def test_canonical_key_is_sorted_json_of_the_normalised_spec(space):
    spec = short({"channels": 24})
    key = space.canonical_key(spec)
    assert json.loads(key) == FULL_DEFAULTS
    assert key == json.dumps(FULL_DEFAULTS, sort_keys=True, separators=(",", ":"))


def test_canonical_key_is_equal_for_all_forms_of_one_candidate(space):
    forms = [
        short({"channels": 24}),
        short({"pool": "none", "channels": 24, "expansion": 2}),
        copy.deepcopy(FULL_DEFAULTS),
        dict(reversed(list(copy.deepcopy(FULL_DEFAULTS).items()))),
        short({"channels": 24}, training={"lr": 0.050, "weight_decay": 0.0005}),
    ]
    assert len({space.canonical_key(f) for f in forms}) == 1
    adam = [short({"channels": 24}, training={"optimizer": "adam", "lr": 1, "momentum": m}) for m in (0.0, 0.5)]
    assert space.canonical_key(adam[0]) == space.canonical_key(adam[1])
    assert space.canonical_key(short({"channels": 24, "depth": 2})) != space.canonical_key(forms[0])


def test_canonical_key_is_stable_across_instances():
    spec = get_space("layers", **DIGITS).sample(random.Random(9))
    assert get_space("layers").canonical_key(spec) == get_space("layers", **CIFAR).canonical_key(spec)


def test_describe_lists_blocks_fields_bounds_and_the_flop_convention(space):
    text = space.describe()
    for word in ("plain", "dwsep", "residual", "bottleneck", "expansion", "batch_size", "label_smoothing",
                 "crop_flip", "8..512", "0|16..1024", "multiply-accumulate", "stages"):
        assert word in text, word
    assert len(text) < 2500


def test_extra_fields_give_counts_and_a_one_line_summary(space):
    spec = space.validate(short({"channels": 16, "stride": 2, "block": "bottleneck", "expansion": 6, "pool": "max"},
                                stem={"channels": 8}, training={"augmentation": "flip"}))
    extra = space.extra_fields(spec)
    st = space.stats(spec)
    assert extra["params"] == st["params"] and extra["flops"] == st["flops"]
    assert "\n" not in extra["summary"]
    assert "bottleneck" in extra["summary"] and "16c" in extra["summary"] and "maxpool" in extra["summary"]
    assert "flip" in extra["summary"] and space.summary(spec) == extra["summary"]
    assert set(get_space("layers").extra_fields(spec)) == {"summary"}  # no task: no counts
