"""model.py for a code-mode candidate (its own file, unchanged, and a wrapper around it), and for
a declared space's candidate (the space file's builder, unchanged, called with its choices).

The candidate's file is written beside model.py as ``candidate_model.py``, byte for byte what
the sandbox trained; model.py loads it from there and calls its ``build_model`` exactly as the
worker did (``evaluator.models.code.build_from_file``): ``build_model(tuple(input_shape),
int(num_classes))``, then one forward pass of two zero images in eval mode (which creates any
lazily built layers), then train mode. Nothing here imports or runs the candidate: its file
is only parsed, to list what it imports. An import of anything other than torch and the
standard library is a warning, because the export then needs that package too.
"""

from __future__ import annotations

import ast
import sys

from agent.exporter.template import Source

CANDIDATE_FILE = "candidate_model.py"
ALLOWED_ROOTS = frozenset({"torch"})  # besides the standard library

BODY = f'''
CANDIDATE_FILE = Path(__file__).resolve().with_name("{CANDIDATE_FILE}")  # the candidate's own file, unchanged


def load_candidate(path=CANDIDATE_FILE):
    """Import the candidate's file as the module ``candidate_model``."""
    spec = importlib.util.spec_from_file_location("candidate_model", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{{path}} cannot be imported as a Python module; it must lie beside model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_model(input_shape=INPUT_SHAPE, num_classes=NUM_CLASSES):
    """The candidate's network, built as archagent's evaluator built it: its build_model, then one
    forward pass of two zero images in eval mode (this creates any lazily built layers), then train mode."""
    model = load_candidate().build_model(tuple(input_shape), int(num_classes))
    model.eval()
    with torch.no_grad():
        model(torch.zeros(2, *input_shape))
    model.train()
    return model
'''


def code_source(source: str) -> Source:
    """The wrapper, the candidate's file as an extra file, and a warning for foreign imports."""
    foreign = foreign_imports(source)
    warnings = ()
    if foreign:
        warnings = (f"{CANDIDATE_FILE} imports {', '.join(foreign)}, which {'is' if len(foreign) == 1 else 'are'} "
                    "neither torch nor the standard library: the export needs "
                    f"{'it' if len(foreign) == 1 else 'them'} installed wherever it is used",)
    # The summary (the candidate's own docstring and knobs) goes only into the card's comments,
    # which template.plain keeps comments; never into this docstring, where quotes could end it.
    docstring = (f"An archagent code-mode candidate: its own file is {CANDIDATE_FILE} (unchanged, as the sandbox\n"
                 "trained it); this wrapper gives it the export's interface. Input (B, C, H, W) normalised images\n"
                 "(see normalise), output (B, NUM_CLASSES) logits.")
    needs = (f"Needs {CANDIDATE_FILE} beside it and torch"
             + (f", and {', '.join(foreign)}, which it imports." if foreign else " (it imports nothing else)."),
             f"{CANDIDATE_FILE} is candidate code (perhaps LLM-written) that archagent ran only in its sandbox: "
             "read it before you run it.")
    return Source(docstring=docstring, body=BODY.strip(), imports=("import importlib.util",),
                  extra_files={CANDIDATE_FILE: source}, warnings=warnings, needs=needs)


def foreign_imports(source: str) -> list[str]:
    """Top-level modules the file imports that are neither torch nor in the standard library."""
    try:
        tree = ast.parse(source)
    except SyntaxError:  # the space's checks passed it once; a file that no longer parses imports nothing we can see
        return []
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return sorted(r for r in roots if r not in ALLOWED_ROOTS and r not in sys.stdlib_module_names)


BUILDER_FILE = "space_builder.py"

BUILDER_BODY = f'''
BUILDER_FILE = Path(__file__).resolve().with_name("{BUILDER_FILE}")  # the space file's builder, unchanged
CHOICES = json.loads(CHOICES_JSON)  # this candidate: one choice per slot of the space file


def load_builder(path=BUILDER_FILE):
    """Import the space's builder as the module ``space_builder``."""
    spec = importlib.util.spec_from_file_location("space_builder", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{{path}} cannot be imported as a Python module; it must lie beside model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_model(input_shape=INPUT_SHAPE, num_classes=NUM_CLASSES, choices=None):
    """The candidate's network, built as archagent's evaluator built it: the builder's
    build_model(choices, input_shape, num_classes), then one forward pass of two zero images in
    eval mode (this creates any lazily built layers), then train mode."""
    model = load_builder().build_model(dict(CHOICES if choices is None else choices), tuple(input_shape),
                                       int(num_classes))
    model.eval()
    with torch.no_grad():
        model(torch.zeros(2, *input_shape))
    model.train()
    return model
'''


def declared_source(builder: str, choices: dict, space_name: str) -> Source:
    """The wrapper with the candidate's choices, the space's builder as an extra file, and a warning
    for foreign imports."""
    import json

    foreign = foreign_imports(builder)
    warnings = ()
    if foreign:
        warnings = (f"{BUILDER_FILE} imports {', '.join(foreign)}, which {'is' if len(foreign) == 1 else 'are'} "
                    "neither torch nor the standard library: the export needs "
                    f"{'it' if len(foreign) == 1 else 'them'} installed wherever it is used",)
    docstring = (f"A candidate of the declared search space {space_name!r}: the space file's builder is {BUILDER_FILE}\n"
                 "(unchanged, as the sandbox ran it), called with this candidate's choices (CHOICES). Input\n"
                 "(B, C, H, W) normalised images (see normalise), output (B, NUM_CLASSES) logits.")
    needs = (f"Needs {BUILDER_FILE} beside it and torch"
             + (f", and {', '.join(foreign)}, which it imports." if foreign else " (it imports nothing else)."),)
    literal = json.dumps(json.dumps(choices, sort_keys=False))
    body = f"CHOICES_JSON = {literal}\n" + BUILDER_BODY.strip()
    return Source(docstring=docstring, body=body, imports=("import importlib.util", "import json"),
                  extra_files={BUILDER_FILE: builder}, warnings=warnings, needs=needs)
