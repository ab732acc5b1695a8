"""The search-space contract (evaluator.spaces.base.SearchSpace), checked the same way for every
registered space: sample, mutate, validate, the canonical key, the schema round trip, the LLM
hooks and the capabilities. A space added to the registry must be added to SPACES here."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import BaseModel

from evaluator.errors import SpecError
from evaluator.spaces import SPACE_CLASSES, SearchSpace, get_space
from evaluator.spaces.declared import DeclaredSpace, load_space_file
from tests.evaluator.test_declared_space import small_space_text

SHAPE, CLASSES = (1, 8, 8), 10


def _declared(tmp_path: Path) -> SearchSpace:
    path = tmp_path / "space.toml"
    path.write_text(small_space_text())  # without rules: the LLM names a choice per slot (with few, it names a row)
    return DeclaredSpace(load_space_file(path))


SPACES: dict[str, Callable[[Path], SearchSpace]] = {
    "nb201": lambda tmp: get_space("nb201"),
    "layers": lambda tmp: get_space("layers", input_shape=SHAPE, num_classes=CLASSES),
    "code": lambda tmp: get_space("code", input_shape=SHAPE, num_classes=CLASSES, task="digits"),
    "declared": _declared,
}


@pytest.fixture(params=sorted(SPACES))
def space(request, tmp_path) -> SearchSpace:
    return SPACES[request.param](tmp_path)


def test_every_registered_space_is_checked_here():
    assert set(SPACES) == set(SPACE_CLASSES)


def test_samples_validate_to_themselves_and_keys_are_stable(space):
    rng = random.Random(0)
    for _ in range(5):
        spec = space.sample(rng)
        again = space.validate(spec)
        assert space.canonical_key(again) == space.canonical_key(spec)
        assert space.validate(again) == again  # validation is idempotent
        assert space.canonical_key(spec) == space.canonical_key(json.loads(json.dumps(spec)))


def test_the_same_seed_samples_the_same_specs(space):
    a, b = random.Random(3), random.Random(3)
    assert [space.canonical_key(space.sample(a)) for _ in range(3)] == \
        [space.canonical_key(space.sample(b)) for _ in range(3)]


def test_a_mutation_is_valid_and_another_candidate(space):
    rng = random.Random(1)
    spec = space.sample(rng)
    for _ in range(5):
        child = space.mutate(spec, rng)
        assert space.canonical_key(space.validate(child)) == space.canonical_key(child)
        assert space.canonical_key(child) != space.canonical_key(spec)
        spec = child


@pytest.mark.parametrize("bad", [None, 7, "not a spec", ["a", "list"], {"surely_not_a_field": 1}])
def test_bad_input_is_a_spec_error_that_says_what_is_wrong(space, bad):
    with pytest.raises(SpecError) as info:
        space.validate(bad)
    assert info.value.message and info.value.hint


def test_specs_round_trip_through_json_and_the_proposal_schema(space):
    spec = space.sample(random.Random(2))
    text = json.dumps(spec)
    assert space.validate(json.loads(text)) == space.validate(spec)
    schema = space.llm_schema
    assert isinstance(schema, type) and issubclass(schema, BaseModel)
    json.dumps(schema.model_json_schema())  # the LLM gets it as JSON


def test_an_llm_proposal_applies_to_a_spec(space):
    """What the LLM emits (llm_schema) becomes a spec through apply_proposal: the spec itself where
    the proposal is a spec, an edit of the shown file where it is an edit (edit_example)."""
    rng = random.Random(4)
    base = space.sample(rng)
    edit = space.edit_example(base, rng)
    if edit is None:  # the LLM emits a spec
        proposal = space.llm_schema.model_validate(base).model_dump(mode="json")
        assert space.canonical_key(space.validate(space.apply_proposal(proposal, base))) == space.canonical_key(base)
    else:  # the LLM emits edits of the file a prompt shows
        assert space.show(base)
        proposal = space.llm_schema.model_validate({"edits": [edit]})
        child = space.validate(space.apply_proposal(proposal, base))
        assert space.canonical_key(child) != space.canonical_key(base)


def test_texts_for_people_and_prompts(space):
    spec = space.sample(random.Random(5))
    assert space.describe().strip() and space.label
    assert isinstance(space.summary(spec), str) and space.summary(spec)
    assert isinstance(space.stats(spec), dict) and isinstance(space.extra_fields(spec), dict)


def test_capabilities_are_consistent(space):
    cls = type(space)
    spec = space.sample(random.Random(6))
    if cls.runs_candidate_code:  # hostile code: never built in a trusted process, always from its own file
        assert not cls.builds_in_trusted_process and cls.network_file
        assert cls.network_source(spec) is not None
    else:
        assert cls.network_source(spec) is None
    if cls.network_file is not None:  # built by running a file: only inside the sandboxed worker
        assert not cls.builds_in_trusted_process
    recipe = cls.recipe_of(spec)
    assert recipe is None or isinstance(recipe, dict)
    assert set(cls.llm_limits) <= {"max_tokens", "token_budget", "max_repairs"}
