"""The ``code`` space: seeds, static checks, canonical keys, knob mutation, search/replace proposals.

Nothing here trains a candidate; the seeds (our own files) are imported to check that they build.
"""

from __future__ import annotations

import ast
import difflib
import importlib
import random
import textwrap

import pytest
import torch

from evaluator.errors import SpecError
from evaluator.spaces.code.seeds import seed_path, seed_source
from evaluator.spaces import SPACES, get_space
from evaluator.spaces.code import MAX_CHARS, CodeProposal, CodeSpace, CodeSpec
from evaluator.recipe import Training

TASKS = {"digits": ((1, 8, 8), 10), "cifar10": ((3, 32, 32), 10), "folder:/tmp/x": ((3, 64, 48), 7)}

MINIMAL = textwrap.dedent('''\
    """A linear model."""
    from torch import nn

    WIDTH = 16
    SCALE = 3.0
    USE_BIAS = True
    NAME = "plain"

    TRAINING = {"optimizer": "adam", "lr": 0.01}


    def build_model(input_shape, num_classes):
        c, h, w = input_shape
        return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, WIDTH, bias=USE_BIAS), nn.ReLU(),
                             nn.Linear(WIDTH, num_classes))
    ''')


@pytest.fixture
def space() -> CodeSpace:
    return get_space("code", input_shape=(1, 8, 8), num_classes=10, task="digits")


def error(space: CodeSpace, source: str) -> SpecError:
    with pytest.raises(SpecError) as info:
        space.validate({"source": source})
    return info.value


# --- registry and seeds ------------------------------------------------------------------


def test_registered_and_task_reaches_only_the_code_space():
    assert SPACES["code"] is CodeSpace
    assert get_space("code", task="cifar10").seed == seed_source("cifar10")
    assert get_space("code").seed == seed_source(None) == seed_path("folder:/x").read_text()
    get_space("layers", input_shape=(1, 8, 8), num_classes=10, task="digits")  # takes no task: not passed


def test_seed_lookup_by_task_name():
    assert seed_path("digits").name == "digits.py" and seed_path("cifar10").name == "cifar10.py"
    for other in (None, "file:/data/x.npz", "folder:/imgs", "nb201-cifar10"):
        assert seed_path(other).name == "image.py"


@pytest.mark.parametrize("task", list(TASKS))
def test_seed_validates_and_builds_logits_for_its_task(task):
    shape, classes = TASKS[task]
    space = CodeSpace(shape, classes, task=task)
    spec = space.validate({"source": space.seed})
    assert spec["training"] == Training.model_validate(spec["training"]).model_dump(mode="json")
    tree = ast.parse(spec["source"])
    assert ast.get_docstring(tree).splitlines()[0].strip()
    imported = {n.split(".")[0] for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                for n in ([a.name for a in node.names] if isinstance(node, ast.Import) else [node.module])}
    assert imported <= {"torch", "math", "typing", "functools"}
    module = importlib.import_module(f"evaluator.spaces.code.seeds.{seed_path(task).stem}")
    model = module.build_model(shape, classes)
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(2, *shape)).shape == (2, classes)


def test_image_seed_handles_odd_shapes():
    module = importlib.import_module("evaluator.spaces.code.seeds.image")
    for shape in ((1, 1, 1), (1, 5, 300), (4, 128, 128)):
        model = module.build_model(shape, 3).eval()
        with torch.no_grad():
            assert model(torch.randn(2, *shape)).shape == (2, 3)


# --- validation --------------------------------------------------------------------------


def test_validate_derives_training_and_ignores_an_incoming_one(space):
    spec = space.validate({"source": MINIMAL, "training": {"lr": 0.9, "optimizer": "sgd"}})
    assert spec["source"] == MINIMAL
    assert spec["training"]["optimizer"] == "adam" and spec["training"]["lr"] == 0.01
    assert spec["training"]["batch_size"] == Training().batch_size
    no_training = MINIMAL.replace('TRAINING = {"optimizer": "adam", "lr": 0.01}\n', "")
    assert space.validate({"source": no_training})["training"] == Training().model_dump(mode="json")


def test_validate_rejects_other_keys_and_missing_source(space):
    with pytest.raises(SpecError) as info:
        space.validate({"source": MINIMAL, "sorce": "x"})
    assert info.value.field == "sorce"
    with pytest.raises(SpecError) as info:
        space.validate({"training": {}})
    assert info.value.field == "source"


def test_syntax_error_names_line_column_and_text(space):
    bad = MINIMAL.replace("WIDTH = 16", "WIDTH = (16")
    err = error(space, bad)
    assert err.field == "source" and "does not parse" in err.message and "line " in err.message
    assert "column" in err.message


def test_no_build_model_suggests_the_close_name(space):
    err = error(space, MINIMAL.replace("def build_model(", "def build_mode("))
    assert "build_model" in err.message and "did you mean 'build_mode'" in err.message
    assert "def build_model(input_shape, num_classes)" in err.hint


@pytest.mark.parametrize("signature", ["(input_shape)", "(input_shape, num_classes, width)",
                                       "(input_shape, num_classes, *args)", "(*args, **kwargs)"])
def test_build_model_signature_must_be_two_positional(space, signature):
    err = error(space, MINIMAL.replace("(input_shape, num_classes):", signature + ":"))
    assert "exactly two positional parameters" in err.message and "line 12" in err.message


def test_build_model_with_other_names_and_defaults_is_fine(space):
    space.validate({"source": MINIMAL.replace("(input_shape, num_classes):", "(shape, k=10, *, extra=1):")
                    .replace("input_shape", "shape").replace("num_classes)", "k)")})


def test_top_level_call_is_rejected_with_its_line(space):
    err = error(space, MINIMAL + "\nprint(build_model((1, 8, 8), 10))\n")
    assert "a call" in err.message and "line 17, column 1" in err.message and "print(build_model" in err.message
    assert "__main__" in err.hint


@pytest.mark.parametrize("block", ["for i in range(3):\n    pass\n",
                                   "try:\n    import torch\nexcept ImportError:\n    pass\n",
                                   "with open('x') as f:\n    pass\n", "if WIDTH > 8:\n    WIDTH = 8\n"])
def test_other_top_level_statements_are_rejected(space, block):
    assert "top level" in error(space, MINIMAL + block).message


def test_main_guard_and_strings_are_allowed(space):
    main = 'if __name__ == "__main__":\n    print(build_model((1, 8, 8), 10))\n'
    space.validate({"source": MINIMAL + '\n"""notes"""\n' + main})


def test_unknown_import_is_named_with_a_suggestion(space):
    err = error(space, MINIMAL.replace("from torch import nn", "from torch import nn\nimport torchvisionx"))
    assert "'torchvisionx'" in err.message and "line 3" in err.message and "torch" in err.hint
    err = error(space, MINIMAL.replace("return nn", "import tourch\n    return nn"))  # inside a function too
    assert "'tourch'" in err.message and "did you mean 'torch'" in err.message


def test_relative_import_is_rejected(space):
    assert "relative import" in error(space, "from . import layers\n" + MINIMAL).message


def test_os_and_socket_imports_validate(space):
    """Not a security check: the sandbox is the boundary, and its tests need such files to reach it."""
    imports = "import os\nimport socket\nimport subprocess\nfrom torch import nn"
    source = MINIMAL.replace("from torch import nn", imports)
    assert space.validate({"source": source})["source"] == source


@pytest.mark.parametrize(("replacement", "needle", "field"), [
    ('"lr": 5.0', "TRAINING['lr']", "TRAINING['lr']"),
    ('"optimizer": "adm"', "TRAINING['optimizer']", "TRAINING['optimizer']"),
    ('"epochs": 3', "epochs are set by the task", "TRAINING['epochs']"),
])
def test_bad_training_value_names_the_key(space, replacement, needle, field):
    source = MINIMAL.replace('"lr": 0.01', replacement) if "lr" in replacement or "epochs" in replacement \
        else MINIMAL.replace('"optimizer": "adam"', replacement)
    err = error(space, source)
    assert needle in err.message and err.field == field and "line 9" in err.message


def test_training_must_be_a_literal_dict(space):
    err = error(space, MINIMAL.replace('{"optimizer": "adam", "lr": 0.01}', "dict(lr=0.01)"))
    assert "TRAINING must be a literal dict" in err.message
    err = error(space, MINIMAL + 'TRAINING["lr"] = 0.1\n')
    assert "changed after its definition" in err.message


def test_choices_must_be_a_literal_dict_of_lists(space):
    assert "CHOICES" in error(space, MINIMAL + 'CHOICES = {"NAME": "plain"}\n').message
    space.validate({"source": MINIMAL + 'CHOICES = {"NAME": ["plain", "fancy"]}\n'})


def test_oversize_files_are_rejected(space):
    long = MINIMAL + "# " + "x" * MAX_CHARS + "\n"
    assert "characters" in error(space, long).message
    assert "lines" in error(space, MINIMAL + "X_0 = 0\n" * 400).message


# --- canonical key -------------------------------------------------------------------------


def test_key_ignores_comments_formatting_and_docstrings(space):
    key = space.canonical_key(space.validate({"source": MINIMAL}))
    variant = (MINIMAL.replace('"""A linear model."""', '"""Another docstring\n\nwith more text."""')
               .replace("WIDTH = 16", "WIDTH=16   # the hidden width")
               .replace("def build_model(input_shape, num_classes):",
                        "def build_model(input_shape, num_classes):\n    'builds it'\n    # shape first"))
    assert key.startswith("code:") and len(key) == 25
    assert space.canonical_key(space.validate({"source": variant})) == key
    assert space.canonical_key({"source": MINIMAL.replace("WIDTH = 16", "WIDTH = 17")}) != key


# --- mutation ------------------------------------------------------------------------------


def changed_region(a: str, b: str) -> tuple[str, str]:
    """The differing middle of two texts (same prefix and suffix removed)."""
    p = 0
    while p < min(len(a), len(b)) and a[p] == b[p]:
        p += 1
    s = 0
    while s < min(len(a), len(b)) - p and a[len(a) - 1 - s] == b[len(b) - 1 - s]:
        s += 1
    return a[p:len(a) - s], b[p:len(b) - s]


def literals(source: str) -> dict:
    """Every top-level ``NAME = literal`` of a file (TRAINING's keys as ``TRAINING.key``)."""
    out = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                continue
            if node.targets[0].id == "TRAINING":
                out |= {f"TRAINING.{k}": v for k, v in value.items()}
            else:
                out[node.targets[0].id] = value
    return out


def changed(parent: str, child: str) -> dict:
    """The literals that differ between two files: {name: (old, new)}."""
    a, b = literals(parent), literals(child)
    return {k: (a.get(k), b.get(k)) for k in a.keys() | b.keys()
            if k not in a or k not in b or a[k] != b[k] or type(a[k]) is not type(b[k])}


@pytest.mark.parametrize("task", list(TASKS))
def test_mutate_is_deterministic_and_always_changes_the_key(task):
    shape, classes = TASKS[task]
    space = CodeSpace(shape, classes, task=task)
    spec = space.validate({"source": space.seed})
    for seed in range(12):
        a = space.mutate(spec, random.Random(seed))
        assert a == space.mutate(spec, random.Random(seed))
        assert space.canonical_key(a) != space.canonical_key(spec)


def test_mutation_chains_stay_valid_and_within_bounds_and_choices():
    source = MINIMAL + 'CHOICES = {"NAME": ["plain", "fancy", "wide"]}\n'
    space = CodeSpace((1, 8, 8), 10, task="digits", seed_source=source)
    for seed in range(200):
        rng = random.Random(seed)
        spec = space.sample(rng)
        for _ in range(3):
            child = space.mutate(spec, rng)
            assert space.validate({"source": child["source"]}) == child
            assert space.canonical_key(child) != space.canonical_key(spec)
            old, new = changed_region(spec["source"], child["source"])
            assert "\n" not in old + new or "TRAINING" in new  # one literal changed (or a TRAINING line added)
            namespace: dict = {}
            for node in ast.parse(child["source"]).body:
                if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
                    namespace[node.targets[0].id] = ast.literal_eval(node.value)
            assert namespace["NAME"] in ("plain", "fancy", "wide")
            assert 1 <= namespace["WIDTH"] <= 1024
            Training.model_validate(namespace["TRAINING"])
            spec = child


def test_seed_mutation_chains_stay_valid_and_respect_choices():
    for task in TASKS:
        space = CodeSpace(task=task)
        choices = ast.literal_eval(next(n.value for n in ast.parse(space.seed).body if isinstance(n, ast.Assign)
                                        and n.targets[0].id == "CHOICES"))
        for seed in range(12):
            rng, spec = random.Random(seed), space.validate(space.seed)
            for _ in range(6):
                spec = space.mutate(spec, rng)
            values = {n.targets[0].id: ast.literal_eval(n.value) for n in ast.parse(spec["source"]).body
                      if isinstance(n, ast.Assign) and n.targets[0].id in choices}
            assert all(values[k] in choices[k] for k in values)


def test_mutate_changes_one_literal_and_keeps_every_other_byte():
    source = MINIMAL.replace("WIDTH = 16", "WIDTH = 16  # the hidden width, kept as written")
    space = CodeSpace(seed_source=source)
    spec = space.validate(source)
    seen = set()
    for seed in range(60):
        child = space.mutate(spec, random.Random(seed))
        diff = changed(spec["source"], child["source"])
        assert len(diff) == 1
        (name, (_, new)), = diff.items()
        seen.add((name, new))
        old_text, new_text = changed_region(spec["source"], child["source"])
        assert "\n" not in old_text + new_text and len(old_text) <= 10  # a splice inside one literal
        before, after = spec["source"].splitlines(), child["source"].splitlines()
        assert sum(x != y for x, y in zip(before, after)) == 1 and len(before) == len(after)
    assert {("WIDTH", 32), ("WIDTH", 8), ("USE_BIAS", False), ("SCALE", 6.0), ("SCALE", 1.5),
            ("TRAINING.lr", 0.02), ("TRAINING.lr", 0.005)} <= seen  # int x2 //2, bool, float x2 /2, lr
    assert not any(name == "NAME" for name, _ in seen)  # a string without CHOICES is not mutated


@pytest.mark.parametrize(("line", "expected"), [
    ("KERNEL_SIZE = 3", {1, 5}), ("KERNEL = 1", {3}), ("KERNEL = 4", {3, 5}), ("DEPTH = 2", {1, 3}),
    ("DEPTH = 1", {2}), ("WIDTH = 1024", {512}), ("WIDTH = 48", {24, 96}), ("DROPOUT = 0.0", {0.1}),
    ("DROPOUT = 0.9", {0.8}), ("DROPOUT = 0.3", {0.2, 0.4}), ("EPS = 1e-05", {2e-05, 5e-06}),
    ("GAIN = 2.0", {4.0, 1.0}), ("OFFSET = -3", set()), ("ACT = 'relu'", set()),
    ("ACT = 'relu'\nCHOICES = {'ACT': ['relu', 'gelu', 'silu']}", {"gelu", "silu"}),
    ("WIDTH = 48\nCHOICES = {'WIDTH': [16, 48]}", {16}),
])
def test_knob_rules(line, expected):
    source = f"{line}\nTRAINING = {{}}\n\ndef build_model(s, k):\n    pass\n"
    space = CodeSpace(seed_source=source)
    spec = space.validate(source)
    got = set()
    for seed in range(40):
        child = space.mutate(spec, random.Random(seed))
        for name, (_, new) in changed(spec["source"], child["source"]).items():
            if not name.startswith("TRAINING"):
                got.add(new)
    assert got == expected


def test_training_mutations_stay_in_bounds():
    source = 'TRAINING = {"lr": 0.8, "optimizer": "sgd"}\n\ndef build_model(s, k):\n    pass\n'
    space = CodeSpace(seed_source=source)
    spec = space.validate(source)
    for seed in range(60):
        child = space.mutate(spec, random.Random(seed))
        (name, (old, new)), = changed(spec["source"], child["source"]).items()
        if name == "TRAINING.lr":
            assert new == 0.4 or new == 1.0  # x2 clipped to the bound 1.0
        Training.model_validate({k[len("TRAINING."):]: v for k, v in literals(child["source"]).items()})


def test_training_key_is_inserted_or_appended_when_absent():
    bare = "def build_model(s, k):\n    pass\n"
    space = CodeSpace(seed_source=bare)
    child = space.mutate(space.validate(bare), random.Random(0))
    assert child["source"].startswith(bare) and child["source"][len(bare):].startswith("TRAINING = {")
    assert child["training"] != Training().model_dump(mode="json")


def test_sample_starts_from_the_seed(space):
    spec = space.sample(random.Random(3))
    assert spec == space.sample(random.Random(3))
    assert difflib.SequenceMatcher(None, spec["source"], space.seed).ratio() > 0.95


# --- proposals -------------------------------------------------------------------------------


def test_llm_schema_is_bounded():
    schema = CodeProposal.model_json_schema()
    assert schema["properties"]["edits"]["maxItems"] == 4 and schema["properties"]["source"]["maxLength"] == 16000
    edit = schema["$defs"]["Edit"]["properties"]
    assert edit["search"]["maxLength"] == 2000 and edit["replace"]["maxLength"] == 4000
    assert CodeSpec.model_json_schema()["properties"]["source"]["maxLength"] == MAX_CHARS
    assert CodeSpace.llm_schema is CodeProposal
    assert get_space("layers").llm_schema is get_space("layers").proposal_schema


def test_exact_edit(space):
    spec = space.validate(MINIMAL)
    out = space.apply_proposal({"edits": [{"search": "WIDTH = 16", "replace": "WIDTH = 64"}]}, spec)
    assert out == {"source": MINIMAL.replace("WIDTH = 16", "WIDTH = 64")}
    space.validate(out)


def test_edits_apply_in_order_to_the_seed_without_base(space):
    out = space.apply_proposal(CodeProposal.model_validate({"edits": [
        {"search": "WIDTH = 32", "replace": "WIDTH = 48"}, {"search": "WIDTH = 48", "replace": "WIDTH = 40"}]}), None)
    assert out["source"] == space.seed.replace("WIDTH = 32", "WIDTH = 40", 1)


def test_whitespace_tolerant_edit_reindents(space):
    spec = space.validate(MINIMAL)
    search = ("c, h, w = input_shape  \n"  # indented by 0 and 2 spaces, not 4; a trailing blank
              "  return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, WIDTH, bias=USE_BIAS), nn.ReLU(),")
    replace = ("c, h, w = input_shape\nassert c > 0\n"
               "return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, WIDTH), nn.ReLU(),")
    out = space.apply_proposal({"edits": [{"search": search, "replace": replace}]}, spec)
    assert ("    c, h, w = input_shape\n    assert c > 0\n"
            "    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, WIDTH), nn.ReLU(),\n") in out["source"]
    space.validate(out)


def test_search_not_found_quotes_the_closest_line(space):
    with pytest.raises(SpecError) as info:
        space.apply_proposal({"edits": [{"search": "WIDTH = 16", "replace": "WIDTH = 8"},
                                        {"search": "    return nn.Sequentail(nn.Flatten())", "replace": "x"}]},
                             space.validate(MINIMAL))
    err = info.value
    assert err.field == "edits[1].search"
    assert "line 14: `    return nn.Sequential(nn.Flatten()" in err.message
    assert "copy the search text exactly from the file" in err.hint


def test_ambiguous_search_asks_for_more_lines(space):
    with pytest.raises(SpecError) as info:
        space.apply_proposal({"edits": [{"search": "WIDTH", "replace": "HIDDEN"}]}, space.validate(MINIMAL))
    assert info.value.field == "edits[0].search"
    assert "matches 3 places in the file, not one (at lines 4, 14, 15)" in info.value.message
    assert "include more surrounding lines so it matches once" in info.value.hint


def test_whole_file_source_and_mistakes(space):
    assert space.apply_proposal({"source": MINIMAL}, None) == {"source": MINIMAL}
    # a whole source wins over edits (the LLM schema requires at least one edit)
    both = {"source": MINIMAL, "edits": [{"search": "WIDTH = 16", "replace": "WIDTH = 8"}]}
    assert space.apply_proposal(both, None) == {"source": MINIMAL}
    for value, field in [({}, "edits"),
                         ({"edits": [{"search": "WIDTH = 16", "replace": "WIDTH = 16"}]}, "edits[0]"),
                         ({"edits": [{"search": "", "replace": "x"}]}, "edits.0.search")]:
        with pytest.raises(SpecError) as info:
            space.apply_proposal(value, space.validate(MINIMAL))
        assert info.value.field == field


def test_show_and_summary(space):
    spec = space.validate(MINIMAL)
    assert space.show(spec) == MINIMAL and get_space("nb201").show({}) is None
    line = space.summary(spec)
    assert line == "WIDTH=16 SCALE=3.0 USE_BIAS=True NAME=plain adam lr=0.01 bs=64 | A linear model."
    seed_line = space.summary(space.validate(space.seed))
    assert len(seed_line) <= 200 and "\n" not in seed_line and seed_line.startswith("WIDTH=32 DEPTH=2 KERNEL=3")
    assert space.stats(spec) == {"lines": MINIMAL.count("\n"), "chars": len(MINIMAL)}
    assert space.extra_fields(spec) == {}


def test_describe_states_the_contract(space):
    text = space.describe()
    for needle in ("build_model(input_shape, num_classes)", "(B, C, H, W)", "(B, num_classes)", "1x8x8",
                   "TRAINING", "sandbox", "search", "exactly", "source"):
        assert needle in text
    assert "1x8x8" not in get_space("code").describe()


def test_a_swapped_edit_is_named_as_swapped(space):
    with pytest.raises(SpecError) as info:
        space.apply_proposal({"edits": [{"search": "WIDTH = 48", "replace": "WIDTH = 16"}]}, {"source": MINIMAL})
    assert "look swapped" in str(info.value) and info.value.field == "edits[0].search"
