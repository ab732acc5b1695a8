"""The search-space plug-ins: validation, errors, sample/mutate, canonical keys."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from evaluator.errors import SpecError, UserInputError
from evaluator.spaces import SPACES, SearchSpace, get_space
from evaluator.spaces.nb201 import EDGE_FIELDS, NUM_CELLS, OPS, Nb201Space, arch_string, parse_arch
from tests.conftest import all_archs

EXAMPLE_ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
EXAMPLE_SPEC = {
    "edge_1_0": "nor_conv_3x3",
    "edge_2_0": "nor_conv_3x3",
    "edge_2_1": "avg_pool_3x3",
    "edge_3_0": "skip_connect",
    "edge_3_1": "nor_conv_3x3",
    "edge_3_2": "skip_connect",
}


@pytest.fixture
def space() -> Nb201Space:
    return get_space("nb201")


def diff_edges(a: dict, b: dict) -> list[str]:
    return [f for f in EDGE_FIELDS if a[f] != b[f]]


# --- registry ---------------------------------------------------------------------------


def test_get_space_returns_a_fresh_nb201_instance():
    s = get_space("nb201")
    assert isinstance(s, Nb201Space) and isinstance(s, SearchSpace)
    assert s.name == "nb201" and "nb201" in SPACES
    assert get_space("nb201") is not s


def test_unknown_space_names_the_input_suggests_and_lists_known():
    with pytest.raises(UserInputError) as info:
        get_space("nb210")
    err = info.value
    assert "'nb210'" in err.message
    assert "did you mean 'nb201'" in err.message
    assert "nb201" in err.hint
    assert err.exit_code == 2


def test_unknown_space_far_from_any_name_has_no_suggestion():
    with pytest.raises(UserInputError) as info:
        get_space("transformer")
    assert "'transformer'" in info.value.message and "did you mean" not in info.value.message


# --- validation: accepted forms -----------------------------------------------------------


def test_validate_dict_returns_normalised_spec(space):
    out = space.validate(dict(EXAMPLE_SPEC))
    assert out == EXAMPLE_SPEC
    assert list(out) == list(EDGE_FIELDS)


def test_validate_dict_in_any_key_order_gives_the_same_spec(space):
    shuffled = dict(reversed(list(EXAMPLE_SPEC.items())))
    out = space.validate(shuffled)
    assert out == EXAMPLE_SPEC and list(out) == list(EDGE_FIELDS)


def test_validate_arch_string(space):
    assert space.validate(EXAMPLE_ARCH) == EXAMPLE_SPEC


def test_validate_arch_string_with_surrounding_whitespace(space):
    assert space.validate(f"  {EXAMPLE_ARCH}\n") == EXAMPLE_SPEC


def test_validate_arch_object(space):
    assert space.validate({"arch": EXAMPLE_ARCH}) == EXAMPLE_SPEC


def test_validate_does_not_modify_its_input(space):
    spec = dict(EXAMPLE_SPEC)
    out = space.validate(spec)
    out["edge_1_0"] = "none"
    assert spec == EXAMPLE_SPEC


# --- validation: errors ----------------------------------------------------------------


def test_unknown_op_in_dict_names_the_field_and_lists_the_ops(space):
    bad = dict(EXAMPLE_SPEC, edge_2_1="conv_5x5")
    with pytest.raises(SpecError) as info:
        space.validate(bad)
    err = info.value
    assert err.field == "edge_2_1"
    assert "edge_2_1" in err.message and "'conv_5x5'" in err.message
    for op in OPS:
        assert op in err.message
    assert err.hint


def test_unknown_op_in_dict_suggests_the_closest_op(space):
    with pytest.raises(SpecError) as info:
        space.validate(dict(EXAMPLE_SPEC, edge_2_1="nor_conv_3x4"))
    assert "did you mean 'nor_conv_3x3'" in str(info.value)


def test_wrongly_typed_op_names_the_field(space):
    with pytest.raises(SpecError) as info:
        space.validate(dict(EXAMPLE_SPEC, edge_1_0=3))
    assert info.value.field == "edge_1_0" and "got 3" in info.value.message


def test_missing_edge_is_named(space):
    partial = {k: v for k, v in EXAMPLE_SPEC.items() if k != "edge_3_2"}
    with pytest.raises(SpecError) as info:
        space.validate(partial)
    assert info.value.field == "edge_3_2"
    assert "edge_3_2" in info.value.message and "required" in info.value.message.lower()


def test_extra_key_rejected_and_named(space):
    with pytest.raises(SpecError) as info:
        space.validate(dict(EXAMPLE_SPEC, width=64))
    assert info.value.field == "width"
    assert "width" in info.value.message and "64" in info.value.message


def test_arch_key_next_to_edges_is_an_extra_key(space):
    with pytest.raises(SpecError) as info:
        space.validate(dict(EXAMPLE_SPEC, arch=EXAMPLE_ARCH))
    assert info.value.field == "arch"


def test_error_lists_every_bad_field(space):
    bad = dict(EXAMPLE_SPEC, edge_1_0="bogus", edge_3_0="also_bogus")
    with pytest.raises(SpecError) as info:
        space.validate(bad)
    assert "edge_1_0" in info.value.message and "edge_3_0" in info.value.message
    assert info.value.field == "edge_1_0"


@pytest.mark.parametrize("value, typename", [(5, "int"), (None, "NoneType"), ([1, 2], "list"), (3.5, "float")])
def test_non_dict_input_is_rejected_with_its_type(space, value, typename):
    with pytest.raises(SpecError) as info:
        space.validate(value)
    assert "JSON object" in info.value.message and typename in info.value.message
    assert info.value.hint


def test_unknown_op_in_arch_string_names_edge_and_suggests(space):
    arch = EXAMPLE_ARCH.replace("skip_connect~2", "skip_conect~2")
    with pytest.raises(SpecError) as info:
        space.validate(arch)
    err = info.value
    assert err.field == "edge_3_2"
    assert "'skip_conect'" in err.message and "3<-2" in err.message
    assert "did you mean 'skip_connect'" in err.message
    for op in OPS:
        assert op in err.hint


def test_unknown_op_in_arch_object_names_the_edge(space):
    arch = EXAMPLE_ARCH.replace("avg_pool_3x3~1", "max_pool_3x3~1")
    with pytest.raises(SpecError) as info:
        space.validate({"arch": arch})
    assert info.value.field == "edge_2_1" and "'max_pool_3x3'" in info.value.message


@pytest.mark.parametrize(
    "arch, needle",
    [
        ("", "empty"),
        ("   ", "empty"),
        ("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|", "2 node group"),
        ("|a~0|+|b~0|c~1|+|d~0|e~1|f~2|+|g~0|", "4 node group"),
        ("|nor_conv_3x3~0|+|nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|", "node 2 has 1 edge"),
    ],
)
def test_malformed_arch_strings(space, arch, needle):
    with pytest.raises(SpecError) as info:
        space.validate(arch)
    assert needle in info.value.message and info.value.hint


def test_arch_edge_with_wrong_source_node_names_the_edge(space):
    arch = EXAMPLE_ARCH.replace("avg_pool_3x3~1", "avg_pool_3x3~0")
    with pytest.raises(SpecError) as info:
        space.validate(arch)
    assert info.value.field == "edge_2_1"
    assert "'avg_pool_3x3~0'" in info.value.message and "OP~1" in info.value.message


def test_arch_edge_without_tilde_names_the_edge(space):
    with pytest.raises(SpecError) as info:
        parse_arch("|nor_conv_3x3|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|")
    assert info.value.field == "edge_1_0"


def test_non_string_arch_says_it_must_be_a_string(space):
    with pytest.raises(SpecError) as info:
        space.validate({"arch": 5})
    assert "empty" not in info.value.message and "str" in info.value.message


# --- sample / mutate --------------------------------------------------------------------


def test_sample_is_valid_and_seeded_reproducibly(space):
    a = [space.sample(random.Random(7)) for _ in range(3)]
    assert a[0] == a[1] == a[2]
    assert space.validate(a[0]) == a[0]
    r1, r2 = random.Random(11), random.Random(11)
    seq1 = [space.sample(r1) for _ in range(20)]
    seq2 = [space.sample(r2) for _ in range(20)]
    assert seq1 == seq2
    r3 = random.Random(12)
    assert [space.sample(r3) for _ in range(20)] != seq1


def test_sample_is_roughly_uniform_over_ops_and_cells(space):
    rng = random.Random(0)
    n = 3000
    samples = [space.sample(rng) for _ in range(n)]
    for field in EDGE_FIELDS:
        counts = Counter(s[field] for s in samples)
        assert set(counts) == set(OPS)
        for op in OPS:  # expected 600 per op; 5 sigma is about 110
            assert 450 < counts[op] < 750, (field, counts)
    keys = {space.canonical_key(s) for s in samples}
    # 3000 draws from 15,625 cells: about 2,740 distinct expected
    assert len(keys) > 2500


def test_mutate_changes_exactly_one_edge_and_always_differs(space):
    rng = random.Random(3)
    changed_fields = Counter()
    for _ in range(500):
        parent = space.sample(rng)
        child = space.mutate(parent, rng)
        changed = diff_edges(parent, child)
        assert len(changed) == 1
        assert child != parent and space.canonical_key(child) != space.canonical_key(parent)
        assert space.validate(child) == child
        changed_fields[changed[0]] += 1
    assert set(changed_fields) == set(EDGE_FIELDS)


def test_mutate_leaves_the_parent_untouched_and_is_seeded(space):
    parent = dict(EXAMPLE_SPEC)
    c1 = space.mutate(parent, random.Random(5))
    c2 = space.mutate(parent, random.Random(5))
    assert parent == EXAMPLE_SPEC and c1 == c2


def test_mutate_of_a_uniform_cell_reaches_every_other_op(space):
    parent = {f: "none" for f in EDGE_FIELDS}
    rng = random.Random(1)
    new_ops = {space.mutate(parent, rng)[f] for _ in range(300) for f in EDGE_FIELDS} - {"none"}
    assert new_ops == set(OPS) - {"none"}


# --- canonical key ----------------------------------------------------------------------


def test_canonical_key_is_the_nb201_arch_string(space):
    assert space.canonical_key(EXAMPLE_SPEC) == EXAMPLE_ARCH
    assert space.extra_fields(EXAMPLE_SPEC) == {"arch": EXAMPLE_ARCH}
    assert space.summary(EXAMPLE_SPEC) == EXAMPLE_ARCH


def test_arch_string_round_trip_over_the_whole_space():
    archs = all_archs()
    assert len(archs) == NUM_CELLS == 15625
    assert len(set(archs)) == NUM_CELLS
    for arch in archs:
        spec = parse_arch(arch)
        assert arch_string(spec) == arch
        assert parse_arch(arch_string(spec)) == spec


def test_canonical_key_equal_for_all_forms_of_one_cell(space):
    keys = {
        space.canonical_key(space.validate(EXAMPLE_SPEC)),
        space.canonical_key(space.validate(EXAMPLE_ARCH)),
        space.canonical_key(space.validate({"arch": EXAMPLE_ARCH})),
    }
    assert keys == {EXAMPLE_ARCH}


def test_describe_mentions_every_op_and_the_cell_count(space):
    text = space.describe()
    for op in OPS:
        assert op in text
    assert str(NUM_CELLS) in text
