"""Declared search spaces (evaluator.spaces.declared, evaluator.spaces.declared.rules): the file format,
its errors (file, line, fix), the schema the LLM decodes under, and sampling as the built-ins do."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from evaluator.errors import SpecError
from evaluator.spaces import get_space
from evaluator.spaces.declared import DeclaredSpace
from evaluator.spaces.declared.file import SpaceFileError, load_space_file
from evaluator.spaces.declared.rules import RuleError, parse_rule
from tests.conftest import ROOT

NB201_FILE = ROOT / "docs" / "examples" / "nb201_cell.toml"
BLOCKS = ("conv3", "conv5", "skip")


def small_space_text(rules: str = "", slots: int = 6) -> str:
    """A 3^6 space: six blocks, each one of three types."""
    text = 'name = "six-blocks"\ndescription = "six blocks in a row"\n\n[choices]\n' \
           'conv3 = "3x3 convolution, batch norm, ReLU"\nconv5 = { description = "5x5 convolution", ' \
           'code = "nn.Conv2d(c, c, 5, padding=2)" }\nskip = "identity"\n'
    for i in range(1, slots + 1):
        text += f'\n[slots.b{i}]\ndescription = "block {i}"\nchoices = ["conv3", "conv5", "skip"]\n'
    return text + rules


def write(tmp_path: Path, text: str, name: str = "space.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_nb201_file_samples_and_mutates_exactly_as_the_built_in_space():
    declared = DeclaredSpace(load_space_file(NB201_FILE))
    builtin = get_space("nb201")
    assert declared.size == 15625 and declared.names == tuple(builtin.proposal_schema.model_fields)
    for seed in range(5):
        a, b = random.Random(seed), random.Random(seed)
        for _ in range(20):
            spec = builtin.sample(a)
            assert declared.sample(b) == spec
            assert declared.mutate(spec, b) == builtin.mutate(spec, a)
        assert declared.table_key(spec) == builtin.canonical_key(spec)


def test_the_llm_schema_enumerates_every_slot_and_the_prompt_describes_the_file(tmp_path):
    space = DeclaredSpace(load_space_file(write(tmp_path, small_space_text())))
    schema = space.llm_schema.model_json_schema()
    assert schema["required"] == [f"b{i}" for i in range(1, 7)] and schema["additionalProperties"] is False
    assert all(schema["properties"][f"b{i}"]["enum"] == list(BLOCKS) for i in range(1, 7))
    text = space.describe()
    assert "six blocks in a row" in text and "729 combinations" in text
    assert "- 'conv5': 5x5 convolution (code: nn.Conv2d(c, c, 5, padding=2))" in text
    assert "- b3: block 3. Choices: 'conv3', 'conv5', 'skip'" in text and text.count("5x5 convolution") == 1


def test_validate_names_every_bad_slot_and_normalises_numbers_written_as_text(tmp_path):
    path = write(tmp_path, 'name = "w"\n[slots.width]\nchoices = [16, 32, 64]\n[slots.act]\nchoices = ["relu", "gelu"]\n')
    space = DeclaredSpace(load_space_file(path))
    assert space.validate({"width": "32", "act": "gelu"}) == {"width": 32, "act": "gelu"}
    with pytest.raises(SpecError) as info:
        space.validate({"widht": 32, "act": "geul"})
    text = str(info.value)
    assert "widht: not a slot (did you mean 'width'?)" in text and "width: missing (choices: 16, 32, 64)" in text
    assert "act: 'geul' is not one of its choices ('relu', 'gelu') (did you mean 'gelu'?)" in text
    with pytest.raises(SpecError, match="JSON object"):
        space.validate(["relu"])


def test_rules_constrain_sampling_mutation_and_validation(tmp_path):
    rules = ('\n[[constraints]]\nrule = "count(\'skip\') <= 1"\nmessage = "at most one skip"\n'
             '\n[[constraints]]\nrule = "b1 != \'skip\'"\n')
    space = DeclaredSpace(load_space_file(write(tmp_path, small_space_text(rules))))
    rng = random.Random(0)
    for _ in range(200):
        spec = space.sample(rng)
        child = space.mutate(spec, rng)
        for s in (spec, child):
            assert list(s.values()).count("skip") <= 1 and s["b1"] != "skip"
        assert child != spec
    with pytest.raises(SpecError, match="at most one skip"):
        space.validate(dict(b1="conv3", b2="skip", b3="skip", b4="conv3", b5="conv3", b6="conv3"))
    assert "Every candidate must satisfy: count('skip') <= 1 (at most one skip); b1 != 'skip'" in space.describe()


def test_a_restricted_space_stays_inside_the_combinations_it_is_given(tmp_path):
    file = load_space_file(write(tmp_path, small_space_text()))
    allowed = {("conv3",) * 6, ("conv5",) * 6, ("skip",) + ("conv3",) * 5}
    space = DeclaredSpace(file, restrict=allowed, restrict_source="t.csv")
    rng = random.Random(1)
    for _ in range(30):
        spec = space.sample(rng)
        assert tuple(spec.values()) in allowed and tuple(space.mutate(spec, rng).values()) in allowed
    with pytest.raises(SpecError, match="not among the 3 combinations that t.csv holds"):
        space.validate(dict(zip(space.names, ["conv5"] + ["conv3"] * 5)))
    assert "restricted to the 3 combinations that t.csv holds" in space.describe()


@pytest.mark.parametrize("text, line, message, hint", [
    ('[slots.a]\nchoices = []\n', 2, "slot 'a' has no choices", "give it at least one choice"),
    ('[slots.a]\ndescription = "x"\n', 1, "slot 'a' has no choices", "choices = "),
    ('name = "x"\n', None, "declares no slots", "[slots.NAME]"),
    ('[slots.a]\nchoices = ["x", "x"]\n', 2, "lists the choice 'x' twice", "list each choice once"),
    ('[slots.a]\nchoices = ["x"]\n[slots.json]\nchoices = ["y"]\n', 3, "slot name 'json' is reserved", "rename"),
    ('[slots.a]\nchoices = ["x"]\nchoises = ["y"]\n', 1, "unknown key(s) choises (did you mean 'choices'?)",
     "a slot holds choices"),
    ('slot = 1\n[slots.a]\nchoices = ["x"]\n', 1, "unknown key 'slot' (did you mean 'slots'?)", "top level"),
    ('[slots.a]\nchoices = ["x", "y"]\n[[constraints]]\nrule = "b == 1"\n', 3, "unknown name 'b'", "fix the rule"),
    ('[slots.a]\nchoices = ["x", "y"]\n[[constraints]]\nrule = "a == \'z\'"\n', 3, "'z' is not a choice of slot 'a'",
     "fix the rule"),
    ('[slots.a]\nchoices = ["x", "y"]\n[[constraints]]\nrule = "__import__(\'os\')"\n', 3, "a rule may call only",
     "fix the rule"),
    ('[slots.a]\nchoices = ["x", "y"]\n[[constraints]]\nrule = "a == \'x\'"\n[[constraints]]\nrule = "a == \'y\'"\n',
     None, "no combination of the 2 satisfies every constraint", "loosen"),
    ('[slots.a]\nchoices = ["x", 1]\n[[constraints]]\nrule = "a > 0"\n', 3, "cannot be evaluated for a='x'",
     "compare numbers with numbers"),
    ('[slots.a]\nchoices = ["x"]\n[train]\nbuilder = "nope.py"\n', 4, "builder file not found", "build_model(choices"),
    ('[slots.a]\nchoices = ["x"]\n[lookup]\nkey = "{a}"\n', 3, "[lookup] needs signal", "signal ="),
    ('[slots.a]\nchoices = ["x"]\n[slots.b]\nchoices = ["y"]\n[lookup]\nsignal = "v"\nkey = "{a}"\n', 7,
     "leaves out slot(s) b", "{b}"),
    ('[slots.a]\nchoices = ["x"]\n[lookup]\nsignal = "v"\nkey = "{a}{c}"\n', 5, "uses {c}, which is not a slot",
     "use {SLOT}"),
    ('objectives = ["acc"]\n[slots.a]\nchoices = ["x"]\n', 1, "unknown objective 'acc'", "objectives are"),
    ('[slots.a]\nchoices = ["x"]\nobjectives = ["accuracy"]\n', 1, "slot 'a' has unknown key(s) objectives",
     "move objectives to the top of the file"),
    ('[slots.a\nchoices = ["x"]\n', None, "is not valid TOML", "fix the syntax"),
])
def test_a_bad_space_file_names_the_file_the_line_and_the_fix(tmp_path, text, line, message, hint):
    path = write(tmp_path, text)
    with pytest.raises(SpaceFileError) as info:
        load_space_file(path)
    assert str(path) in info.value.message and message in info.value.message
    assert hint in info.value.hint
    if line is not None:
        assert f"{path} line {line}:" in info.value.message


def test_a_missing_space_file_says_what_to_pass(tmp_path):
    with pytest.raises(SpaceFileError, match="space file not found") as info:
        load_space_file(tmp_path / "none.toml")
    assert "--space-file" in info.value.hint


def test_rules_allow_arithmetic_membership_and_helpers_and_nothing_else():
    slots = {"w1": (16, 32, 64), "w2": (16, 32, 64), "op": ("a", "b")}
    rule = parse_rule("w2 >= w1 and (op in ('a',) or max(w1, w2) // 16 == 4) and abs(w1 - w2) < 64", slots)
    assert rule.holds({"w1": 16, "w2": 32, "op": "a"}) and not rule.holds({"w1": 32, "w2": 16, "op": "a"})
    assert rule.holds({"w1": 64, "w2": 64, "op": "b"}) and not rule.holds({"w1": 16, "w2": 32, "op": "b"})
    for bad in ("w1.real", "[x for x in w1]", "lambda: 1", "open('f')", "w1 is w2", "{'a': 1}", ""):
        with pytest.raises(RuleError):
            parse_rule(bad, slots)


def test_choices_may_be_tables_with_their_own_description_and_code(tmp_path):
    path = write(tmp_path, '[slots.op]\nchoices = [{ value = "mb", description = "inverted residual", code = "MB()" },'
                           ' "conv", 3, 0.5, true]\n')
    space = DeclaredSpace(load_space_file(path))
    assert space.slot("op").values == ("mb", "conv", 3, 0.5, True)
    assert space.validate({"op": "0.5"}) == {"op": 0.5} and space.validate({"op": True}) == {"op": True}
    assert "- 'mb': inverted residual (code: MB())" in space.describe()
    assert json.loads(json.dumps(space.llm_schema.model_json_schema()))["properties"]["op"]["enum"] == \
        ["mb", "conv", 3, 0.5, True]


def test_rules_or_a_table_that_leave_few_combinations_make_the_schema_enumerate_them(tmp_path):
    rules = '\n[[constraints]]\nrule = "count(\'skip\') == 0 and b1 == \'conv3\'"\n'
    space = DeclaredSpace(load_space_file(write(tmp_path, small_space_text(rules))))
    schema = space.llm_schema.model_json_schema()
    combos = schema["properties"]["combination"]["enum"]
    assert len(combos) == 2 ** 5 and schema["required"] == ["combination"]
    spec = space.validate(space.apply_proposal({"combination": combos[3]}, None))
    assert space.summary(spec) == combos[3] and "A proposal names one of the 32 allowed combinations" in space.describe()
    free = DeclaredSpace(load_space_file(write(tmp_path, small_space_text(), "free.toml")))
    assert "combination" not in free.llm_schema.model_json_schema()["properties"]  # no rules: one enumeration per slot


def test_the_nearest_valid_candidate_keeps_the_rules_and_avoids_what_was_seen(tmp_path):
    rules = '\n[[constraints]]\nrule = "count(\'skip\') <= 7"\n'
    space = DeclaredSpace(load_space_file(write(tmp_path, small_space_text(rules, slots=9))))
    assert "combination" not in space.llm_schema.model_json_schema()["properties"]  # 19,000+ valid: per slot
    bad = {f"b{i}": "skip" for i in range(1, 10)}
    rng = random.Random(0)
    near = space.nearest_valid(bad, frozenset(), rng)
    assert list(near.values()).count("skip") == 7 and space.validate(near) == near
    seen = frozenset({space.canonical_key(near)})
    other = space.nearest_valid(bad, seen, rng)
    assert other != near and list(other.values()).count("skip") == 7
    assert space.nearest_valid({"b1": "conv9"}, frozenset(), rng) is None
