"""The ``code`` space: a candidate is a PyTorch model file, changed by search/replace edits.

A candidate file defines ``build_model(input_shape, num_classes) -> torch.nn.Module``
(``input_shape`` is (C, H, W)); the sandboxed worker imports it, trains the module with the
file's ``TRAINING`` recipe and reports predictions, from which the trusted side computes every
metric. **This module never imports or runs a candidate**: everything here is ``ast`` and text.

A spec is ``{"source": <file text>, "training": {<Training fields>}}``. ``training`` is derived
from the file's ``TRAINING = {...}`` literal (the layers space's ``Training`` defaults where it
is absent); an incoming ``training`` is ignored and recomputed, so the file is the whole truth.

Static checks (``validate``), each a SpecError naming the line and column and the fix: size
(``MAX_CHARS``, ``MAX_LINES``), syntax, a top-level ``def build_model`` with two positional
parameters, a top level of only docstrings, imports, definitions and assignments (plus
``if __name__ == "__main__":``), imports of installed modules (``importlib.util.find_spec`` on
the top-level name, which runs nothing: a quality check that catches invented packages, not a
security boundary; the sandbox is that), a literal ``TRAINING`` valid for ``Training`` and a
literal ``CHOICES``.

Knobs are UPPER_CASE module-level constants whose value is an int, float, str or bool literal
(``WIDTH = 32``); ``CHOICES = {"KNOB": [values]}`` names the values a knob may take. ``mutate``
changes one knob or one ``TRAINING`` key by splicing a new literal over the old one's exact
span, leaving every other byte of the file as it was:

    in CHOICES    another listed value
    bool          toggled
    int           kernel-like (KERNEL in the name, or odd 3..7): +-2, staying odd and >= 1;
                  >= 4: x2 (up to 1024) or //2; 0..3: +-1, staying >= 1; negative: never
    float         0 or [0.05, 1): +-0.1 within [0, 0.9] (dropout-like);
                  any other (tiny, >= 1, negative): x2 or /2 (scale-like: eps, lr)
    str           only through CHOICES
    TRAINING      lr x2 or /2 within its bounds; weight_decay, label_smoothing, batch_size,
                  optimizer, schedule, augmentation: another allowed value

Proposals from an LLM (``llm_schema`` = :class:`CodeProposal`) are up to ``MAX_EDITS``
search/replace edits of the shown file, or a whole new ``source``; ``apply_proposal`` turns one
into a spec (exact match first, then a line-wise match that ignores each line's surrounding
whitespace and re-indents the replacement).

``canonical_key`` hashes the module's ``ast.unparse`` without docstrings: comments, formatting
and docstrings do not make a new candidate.
"""

from __future__ import annotations

import ast
import difflib
import functools
import hashlib
import importlib.util
import math
import random
import re
from dataclasses import dataclass
from typing import Any, ClassVar, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from evaluator.errors import SpecError, did_you_mean
from evaluator.spaces.base import SearchSpace, spec_error_from_validation
from evaluator.spaces.layers import Training, _field_text

MAX_CHARS = 20_000
MAX_LINES = 400
MAX_EDITS = 4
MAX_SEARCH_CHARS = 2_000
MAX_REPLACE_CHARS = 4_000
MAX_PROPOSAL_SOURCE = 16_000  # a whole file in one proposal (tighter than MAX_CHARS: generation time)
SUMMARY_CHARS = 200
INT_CAP = 1024  # doubling an int knob stops here

_KNOB_NAME = re.compile(r"[A-Z][A-Z0-9_]*\Z")
_SPECIAL = ("CHOICES", "TRAINING")
_TRAINING_DEFAULTS = Training().model_dump()
# What the Training schema allows for the keys mutation draws from a table.
_TRAINING_TABLES: dict[str, tuple[Any, ...]] = {
    "optimizer": get_args(Training.model_fields["optimizer"].annotation),
    "schedule": get_args(Training.model_fields["schedule"].annotation),
    "augmentation": get_args(Training.model_fields["augmentation"].annotation),
    "batch_size": get_args(Training.model_fields["batch_size"].annotation),
    "weight_decay": (0.0, 1e-5, 1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05),
    "label_smoothing": (0.0, 0.05, 0.1, 0.2, 0.3),
}
_MUTABLE_TRAINING = ("lr", "weight_decay", "label_smoothing", "batch_size", "optimizer", "schedule", "augmentation")
_LR_BOUNDS = (1e-5, 1.0)
_KNOB_WEIGHT = 0.7  # chance that a mutation edits a knob rather than TRAINING (when the file has knobs)
_SUGGESTED_MODULES = ("torch", "math", "typing", "functools", "collections", "itertools", "numpy", "torchvision")


# --------------------------------------------------------------------------------------------
# Schemas
# --------------------------------------------------------------------------------------------


class CodeSpec(BaseModel):
    """A model file; ``training`` is derived from its TRAINING literal (ignored on input)."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(max_length=MAX_CHARS, description="the whole Python file: defines "
                        "build_model(input_shape, num_classes) returning a torch.nn.Module")
    training: dict[str, Any] | None = Field(None, description="derived from the file's TRAINING dict; "
                                            "ignored on input")


class Edit(BaseModel):
    """One search/replace edit of the shown file."""

    model_config = ConfigDict(extra="forbid")

    search: str = Field(min_length=1, max_length=MAX_SEARCH_CHARS,
                        description="text copied exactly from the current file (whole lines, with their "
                        "indentation) that occurs exactly once in it; a few lines are enough")
    replace: str = Field(max_length=MAX_REPLACE_CHARS,
                         description="the text that takes the place of `search` (empty deletes it)")


class CodeProposal(BaseModel):
    """1 to 4 search/replace edits of the shown file, or a whole new file in ``source``.

    ``edits`` comes first and is required (at least one): under constrained decoding a small
    model otherwise emits an empty object. A non-empty ``source`` replaces the file and the
    edits are then ignored."""

    model_config = ConfigDict(extra="forbid")

    edits: list[Edit] = Field(min_length=1, max_length=MAX_EDITS,
                              description=f"1 to {MAX_EDITS} search/replace edits, applied in order to the shown "
                              "file, e.g. {\"search\": \"WIDTH = 32\", \"replace\": \"WIDTH = 48\"}")
    source: str = Field("", max_length=MAX_PROPOSAL_SOURCE,
                        description="leave empty; a whole new file only when the change is too big for edits "
                        "(it then replaces the file and the edits are ignored)")


# --------------------------------------------------------------------------------------------
# Text positions: ast gives (line, UTF-8 byte column); splicing needs character offsets
# --------------------------------------------------------------------------------------------


def _line_starts(text: str) -> list[int]:
    """Character offset of each line's start (index 0 is line 1), splitting as Python's tokenizer does."""
    return [0] + [m.end() for m in re.finditer(r"\r\n|\r|\n", text)]


def _offset(text: str, starts: list[int], lineno: int, col_bytes: int) -> int:
    start = starts[lineno - 1]
    end = starts[lineno] if lineno < len(starts) else len(text)
    return start + len(text[start:end].encode("utf-8")[:col_bytes].decode("utf-8", errors="ignore"))


def _span(text: str, node: ast.AST) -> tuple[int, int]:
    """The character span [start, end) of ``node`` in ``text``."""
    starts = _line_starts(text)
    return (_offset(text, starts, node.lineno, node.col_offset),
            _offset(text, starts, node.end_lineno, node.end_col_offset))


def _line_text(text: str, lineno: int) -> str:
    lines = re.split(r"\r\n|\r|\n", text)
    return lines[lineno - 1] if 0 < lineno <= len(lines) else ""


def _count_lines(text: str) -> int:
    return len(_line_starts(text)) - (1 if text.endswith(("\n", "\r")) else 0)


def _where(text: str, node: ast.AST) -> str:
    """``line N, column M: `the line``` for an error message (both 1-based)."""
    line = _line_text(text, node.lineno).strip()
    return f"line {node.lineno}, column {node.col_offset + 1}: `{_clip(line, 120)}`"


def _clip(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 3] + "..."


# --------------------------------------------------------------------------------------------
# Parsing and static checks
# --------------------------------------------------------------------------------------------


@dataclass
class _Parsed:
    """What the checks learnt about a file."""

    text: str
    tree: ast.Module
    knobs: dict[str, tuple[Any, ast.expr]]  # name -> (value, node of the value), in source order
    training_node: ast.Dict | None  # the TRAINING literal in effect
    training: dict[str, Any]  # normalised Training fields
    choices: dict[str, list[Any]]


def _literal(node: ast.expr) -> tuple[bool, Any]:
    """(True, value) when ``node`` is a literal; (False, None) otherwise."""
    try:
        return True, ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None


def _is_main_guard(stmt: ast.stmt) -> bool:
    if not isinstance(stmt, ast.If) or not isinstance(stmt.test, ast.Compare) or len(stmt.test.ops) != 1:
        return False
    sides = [stmt.test.left, stmt.test.comparators[0]]
    names = [s.id for s in sides if isinstance(s, ast.Name)]
    consts = [s.value for s in sides if isinstance(s, ast.Constant)]
    return isinstance(stmt.test.ops[0], ast.Eq) and names == ["__name__"] and consts == ["__main__"]


_STATEMENT_WORDS = {
    ast.Expr: "an expression statement", ast.For: "a for loop", ast.AsyncFor: "a for loop",
    ast.While: "a while loop", ast.With: "a with block", ast.AsyncWith: "a with block",
    ast.Try: "a try block", ast.If: "an if block", ast.Raise: "a raise", ast.Assert: "an assert",
    ast.Delete: "a del", ast.Global: "a global statement", ast.Nonlocal: "a nonlocal statement",
    ast.Return: "a return",
}
if hasattr(ast, "TryStar"):  # Python 3.11+
    _STATEMENT_WORDS[ast.TryStar] = "a try block"
if hasattr(ast, "Match"):
    _STATEMENT_WORDS[ast.Match] = "a match block"


def _check_top_level(text: str, tree: ast.Module) -> None:
    allowed = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign,
               ast.AnnAssign, ast.AugAssign, ast.Pass)
    for stmt in tree.body:
        if isinstance(stmt, allowed) or _is_main_guard(stmt):
            continue
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str):
            continue  # a docstring or a string used as a comment
        what = _STATEMENT_WORDS.get(type(stmt), f"a {type(stmt).__name__} statement")
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
            what = "a call"
        raise SpecError(
            f"{_where(text, stmt)}: {what} at the top level of the file runs when the file is imported; "
            "the top level may hold only the docstring, imports, def/class definitions and assignments",
            hint="move it into a function (e.g. into build_model), or under `if __name__ == \"__main__\":`",
            field="source",
        )


def _check_build_model(text: str, tree: ast.Module) -> None:
    defs = [s for s in tree.body if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and s.name == "build_model"]
    assigned = [s for s in tree.body if isinstance(s, (ast.Assign, ast.AnnAssign))
                and any(isinstance(t, ast.Name) and t.id == "build_model"
                        for t in (s.targets if isinstance(s, ast.Assign) else [s.target]))]
    if not defs:
        if assigned:
            raise SpecError(
                f"{_where(text, assigned[-1])}: build_model is assigned, not defined with `def`",
                hint="write `def build_model(input_shape, num_classes):` returning a torch.nn.Module", field="source")
        names = [s.name for s in tree.body if isinstance(s, (ast.FunctionDef, ast.ClassDef))]
        raise SpecError(
            "the file defines no top-level `def build_model(input_shape, num_classes)`"
            + did_you_mean("build_model", names),
            hint="add `def build_model(input_shape, num_classes):` at the top level (not inside a class or "
                 "function) that returns a torch.nn.Module mapping (B, C, H, W) to (B, num_classes) logits",
            field="source")
    node = defs[-1]  # the last definition is the one the import leaves
    if not isinstance(node, ast.FunctionDef):
        kind = "a class" if isinstance(node, ast.ClassDef) else "an async function"
        raise SpecError(f"{_where(text, node)}: build_model is {kind}; it must be a plain function",
                        hint="write `def build_model(input_shape, num_classes):` returning a torch.nn.Module",
                        field="source")
    args = node.args
    positional = [a.arg for a in args.posonlyargs + args.args]
    problems = []
    if len(positional) != 2:
        problems.append(f"it takes {len(positional)} positional parameter(s) ({', '.join(positional) or 'none'})")
    if args.vararg is not None or args.kwarg is not None:
        problems.append("it takes *args or **kwargs")
    required_kwonly = [a.arg for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is None]
    if required_kwonly:
        problems.append(f"it requires keyword-only parameter(s) {', '.join(required_kwonly)}")
    if problems:
        raise SpecError(
            f"{_where(text, node)}: build_model must take exactly two positional parameters "
            f"(input_shape, num_classes), but " + " and ".join(problems),
            hint="write `def build_model(input_shape, num_classes):`; input_shape is (C, H, W)", field="source")


@functools.lru_cache(maxsize=512)
def _installed(top: str) -> bool:
    """Whether a top-level module can be found; nothing is imported or run."""
    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return False


def _statements(node: ast.AST):
    """Every statement in ``node``'s bodies, nested ones included (cheaper than ast.walk:
    statements never hide inside expressions)."""
    for _, value in ast.iter_fields(node):
        if isinstance(value, list):
            for item in value:
                if isinstance(item, ast.stmt):
                    yield item
                    yield from _statements(item)
                elif isinstance(item, (ast.excepthandler, getattr(ast, "match_case", ast.excepthandler))):
                    yield from _statements(item)


def _check_imports(text: str, tree: ast.Module) -> None:
    for node in _statements(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            raise SpecError(
                f"{_where(text, node)}: a relative import; the file is imported on its own, not from a package",
                hint="import installed modules by their absolute name (torch, math, ...), or define the code in "
                     "this file", field="source")
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if not _installed(top):
                known = [m for m in _SUGGESTED_MODULES if _installed(m)]
                raise SpecError(
                    f"{_where(text, node)}: no module named {top!r} is installed{did_you_mean(top, known)}",
                    hint="use torch (plus math, typing, functools); nothing can be installed in the sandbox",
                    field="source")


def _top_level_assignments(tree: ast.Module):
    """(name, value node or None, statement) for each top-level assignment to a plain name;
    the value is None where it is not a plain ``NAME = value`` (augmented, tuple targets)."""
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign):
            for target in stmt.targets:
                if isinstance(target, ast.Name):
                    yield target.id, (stmt.value if len(stmt.targets) == 1 else None), stmt
                else:
                    for sub in ast.walk(target):
                        if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                            yield sub.id, None, stmt
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            yield stmt.target.id, stmt.value, stmt
        elif isinstance(stmt, ast.AugAssign) and isinstance(stmt.target, ast.Name):
            yield stmt.target.id, None, stmt


def _subscript_target_of(stmt: ast.stmt) -> str | None:
    """The name behind ``NAME[...] = ...`` / ``NAME.attr = ...`` at the top level, if any."""
    targets = stmt.targets if isinstance(stmt, ast.Assign) else [getattr(stmt, "target", None)]
    for target in targets:
        while isinstance(target, (ast.Subscript, ast.Attribute)):
            target = target.value
            if isinstance(target, ast.Name):
                return target.id
    return None


def _collect(text: str, tree: ast.Module) -> _Parsed:
    knobs: dict[str, tuple[Any, ast.expr]] = {}
    specials: dict[str, tuple[ast.expr | None, ast.stmt]] = {}
    for name, value, stmt in _top_level_assignments(tree):
        if name in _SPECIAL:
            specials[name] = (value, stmt)
            continue
        knobs.pop(name, None)  # a later assignment replaces an earlier one (and keeps its place last)
        if value is None or not _KNOB_NAME.match(name):
            continue
        ok, literal = _literal(value)
        if ok and isinstance(literal, (bool, int, float, str)):
            knobs[name] = (literal, value)
    for stmt in tree.body:
        name = _subscript_target_of(stmt) if isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)) else None
        if name in _SPECIAL:
            raise SpecError(f"{_where(text, stmt)}: {name} is changed after its definition; the evaluator reads "
                            f"{name} without running the file, so it must be one literal dict",
                            hint=f"write every entry into the `{name} = {{...}}` literal itself", field=name)
    training_node, training = _training(text, specials.get("TRAINING"))
    choices = _choices(text, specials.get("CHOICES"))
    return _Parsed(text=text, tree=tree, knobs=knobs, training_node=training_node, training=training,
                   choices=choices)


def _literal_dict(text: str, name: str, entry: tuple[ast.expr | None, ast.stmt], example: str) -> tuple[ast.Dict, dict]:
    value, stmt = entry
    ok, literal = _literal(value) if value is not None else (False, None)
    if not isinstance(value, ast.Dict) or not ok or not isinstance(literal, dict):
        raise SpecError(
            f"{_where(text, stmt)}: {name} must be a literal dict such as {example}; the evaluator reads it "
            "without running the file, so it cannot use names, calls or arithmetic",
            hint=f"write `{name} = {{...}}` with plain strings, numbers and lists", field=name)
    bad = [k for k in literal if not isinstance(k, str)]
    if bad:
        raise SpecError(f"{_where(text, stmt)}: {name} keys must be strings, got {bad[0]!r}",
                        hint=f"quote the keys of {name}", field=name)
    return value, literal


def _training(text: str, entry: tuple[ast.expr | None, ast.stmt] | None) -> tuple[ast.Dict | None, dict[str, Any]]:
    if entry is None:
        return None, dict(_TRAINING_DEFAULTS)
    node, literal = _literal_dict(text, "TRAINING", entry, '{"optimizer": "adamw", "lr": 0.003}')
    try:
        training = Training.model_validate(literal).model_dump(mode="json")
    except ValidationError as exc:
        problems, first = [], None
        for err in exc.errors():
            key = str(err["loc"][0]) if err["loc"] else ""
            first = first or key
            message = f"TRAINING[{key!r}]: {err['msg']}"
            if err["type"] == "extra_forbidden":
                message += did_you_mean(key, Training.model_fields)
                if key == "epochs":
                    message += " (epochs are set by the task, not by the file)"
            else:
                message += f" (got {err.get('input')!r}); allowed: {_field_text(key, Training.model_fields[key])}"
            problems.append(message)
        line = _key_line(node, first) or node.lineno
        raise SpecError(
            f"line {line}: " + "; ".join(problems),
            hint="TRAINING keys: " + "; ".join(_field_text(n, f) for n, f in Training.model_fields.items()),
            field=f"TRAINING[{first!r}]") from None
    if training["optimizer"] != "sgd":  # as in the layers space: momentum applies to sgd only
        training["momentum"] = _TRAINING_DEFAULTS["momentum"]
    return node, training


def _key_line(node: ast.Dict, key: str | None) -> int | None:
    for k in node.keys:
        if isinstance(k, ast.Constant) and k.value == key:
            return k.lineno
    return None


def _choices(text: str, entry: tuple[ast.expr | None, ast.stmt] | None) -> dict[str, list[Any]]:
    if entry is None:
        return {}
    _, literal = _literal_dict(text, "CHOICES", entry, '{"ACTIVATION": ["relu", "gelu"], "KERNEL": [3, 5]}')
    for key, values in literal.items():
        if (not isinstance(values, (list, tuple)) or not values
                or not all(isinstance(v, (bool, int, float, str)) for v in values)):
            raise SpecError(
                f"line {entry[1].lineno}: CHOICES[{key!r}] must be a non-empty list of numbers, strings or "
                f"booleans, got {_clip(repr(values), 80)}",
                hint='write e.g. CHOICES = {"ACTIVATION": ["relu", "gelu"], "KERNEL": [3, 5]}', field="CHOICES")
    return {k: list(v) for k, v in literal.items()}


def parse_source(source: Any) -> _Parsed:
    """Every static check of a model file; SpecError (line, column, fix) on the first failure."""
    if not isinstance(source, str):
        raise SpecError(f"source must be the file's text as a string, got {type(source).__name__}",
                        hint="put the whole Python file in `source`", field="source")
    if len(source) > MAX_CHARS:
        raise SpecError(f"the file has {len(source):,} characters, over the limit of {MAX_CHARS:,}",
                        hint="make it shorter: remove unused code and long comments", field="source")
    lines = _count_lines(source)
    if lines > MAX_LINES:
        raise SpecError(f"the file has {lines} lines, over the limit of {MAX_LINES}",
                        hint="make it shorter: remove unused code, reuse one block class", field="source")
    try:
        tree = ast.parse(source, filename="<candidate>")
    except SyntaxError as exc:
        where = f"line {exc.lineno}, column {exc.offset or 1}: " if exc.lineno else ""
        line = _line_text(source, exc.lineno).strip() if exc.lineno else ""
        raise SpecError(f"the file does not parse: {where}{exc.msg}" + (f": `{_clip(line, 120)}`" if line else ""),
                        hint="fix the syntax there (brackets, colons, indentation, quotes)", field="source") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise SpecError(f"the file does not parse: {type(exc).__name__}: {_clip(str(exc), 200)}",
                        hint="remove null bytes and very deep nesting", field="source") from None
    _check_top_level(source, tree)
    _check_build_model(source, tree)
    _check_imports(source, tree)
    return _collect(source, tree)


def _without_docstrings(tree: ast.Module) -> ast.Module:
    for node in [tree, *_statements(tree)]:
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or ([] if isinstance(node, ast.Module) else [ast.Pass()])
    return tree


def _docstring_line(parsed_tree: ast.Module | None, text: str) -> str:
    doc = ast.get_docstring(parsed_tree) if parsed_tree is not None else None
    if doc:
        return doc.strip().splitlines()[0].strip()
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), "")


# --------------------------------------------------------------------------------------------
# Mutation: new literal values, spliced into the text
# --------------------------------------------------------------------------------------------


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def _round(x: float) -> float:
    return float(f"{x:.6g}")


def _knob_options(name: str, value: Any, choices: dict[str, list[Any]]) -> list[Any]:
    """The values a mutation may give knob ``name`` (see the module docstring's table)."""
    if name in choices:
        options: list[Any] = []
        for v in choices[name]:
            if not _same(v, value) and not any(_same(v, o) for o in options):
                options.append(v)
        return options
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        if value < 0:
            return []
        if value % 2 == 1 and ("KERNEL" in name or 3 <= value <= 7):
            return [v for v in (value - 2, value + 2) if v >= 1]
        if "KERNEL" in name:  # an even kernel: move to the odd neighbours
            return [v for v in (value - 1, value + 1) if v >= 1]
        if value >= 4:
            return [v for v in (value * 2,) if v <= INT_CAP] + [value // 2]
        return [v for v in (value - 1, value + 1) if v >= 1]
    if isinstance(value, float):
        if not math.isfinite(value):
            return []
        if value == 0.0 or 0.05 <= value < 1.0:
            moved = {min(0.9, max(0.0, round(value + d, 6))) for d in (-0.1, 0.1)}
            return sorted(v for v in moved if v != value)
        return [_round(value * 2), _round(value / 2)]
    return []  # a string without CHOICES: no way to know what else it may be


def _training_options(key: str, current: Any) -> list[Any]:
    if key == "lr":
        lo, hi = _LR_BOUNDS
        return sorted({min(hi, max(lo, _round(current * f))) for f in (2.0, 0.5)} - {current})
    return [v for v in _TRAINING_TABLES[key] if not _same(v, current) and v != current]


def _format_literal(value: Any, old_text: str | None = None) -> str:
    if isinstance(value, str):
        quote_double = old_text is None or old_text.lstrip().startswith('"')
        if quote_double and value.isprintable() and '"' not in value and "\\" not in value:
            return f'"{value}"'
        return repr(value)
    return repr(value)  # bool, int, float: repr is a valid literal (2.0, 0.003, 1e-05, True)


def _splice(text: str, start: int, end: int, new: str) -> str:
    return text[:start] + new + text[end:]


def _set_training(parsed: _Parsed, key: str, value: Any) -> str:
    """The text with TRAINING[key] set to ``value``: the old value's span replaced, or the key
    inserted just after the dict's opening brace, or a TRAINING line appended to the file."""
    text, node = parsed.text, parsed.training_node
    literal = _format_literal(value)
    if node is None:
        sep = "" if text.endswith(("\n", "\r")) or not text else "\n"
        return f'{text}{sep}TRAINING = {{"{key}": {literal}}}\n'
    for k, v in reversed(list(zip(node.keys, node.values))):  # the last duplicate key is the one in effect
        if isinstance(k, ast.Constant) and k.value == key:
            start, end = _span(text, v)
            return _splice(text, start, end, _format_literal(value, text[start:end]))
    start, _ = _span(text, node)  # text[start] is "{"
    entry = f'"{key}": {literal}' + (", " if node.keys else "")
    return _splice(text, start + 1, start + 1, entry)


# --------------------------------------------------------------------------------------------
# Proposals: search/replace edits
# --------------------------------------------------------------------------------------------


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _reindent(line: str, levels: dict[str, str], search_indent: str, file_indent: str) -> str:
    """``line`` of a replacement, moved from the search's indentation to the file's.

    ``levels`` maps each indentation of the search's lines to the file's indentation of the
    line it matched (so tabs against spaces come out right); a deeper level keeps its extra
    part; a line outside both shifts by the difference in width.
    """
    if not line.strip():
        return ""
    indent = _indent(line)
    for search_level in sorted(levels, key=len, reverse=True):
        if indent.startswith(search_level):
            return levels[search_level] + line[len(search_level):]
    width = max(0, len(indent) + len(file_indent) - len(search_indent))
    return " " * width + line.lstrip()


def _line_of(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def _apply_edit(text: str, search: str, replace: str, i: int) -> str:
    field = f"edits[{i}].search"
    if search == replace:
        raise SpecError(f"edits[{i}]: replace is the same as search, so the edit changes nothing",
                        hint="put the changed text in `replace`, or drop this edit", field=f"edits[{i}]")
    first = text.find(search)
    if first >= 0:
        second = text.find(search, first + 1)
        if second < 0:
            return text[:first] + replace + text[first + len(search):]
        starts, at = [], first
        while at >= 0:
            starts.append(_line_of(text, at))
            at = text.find(search, at + 1)
        raise _ambiguous(i, starts)
    # A line-wise match that ignores each line's leading and trailing whitespace.
    lines = text.splitlines(keepends=True)
    wanted = [ln.strip() for ln in search.splitlines()]
    while wanted and not wanted[0]:
        wanted.pop(0)
    while wanted and not wanted[-1]:
        wanted.pop()
    if not wanted:
        raise SpecError(f"{field} is only whitespace", hint="copy the lines to change from the file", field=field)
    stripped = [ln.strip() for ln in lines]
    m = len(wanted)
    hits = [s for s in range(len(lines) - m + 1) if stripped[s:s + m] == wanted]
    if len(hits) > 1:
        raise _ambiguous(i, [h + 1 for h in hits])
    if not hits:
        error = _not_found(lines, stripped, wanted, i)
        swapped = [ln.strip() for ln in replace.splitlines() if ln.strip()]
        if swapped and any(stripped[k:k + len(swapped)] == swapped for k in range(len(lines) - len(swapped) + 1)):
            error = SpecError(f"{error.message}; but its `replace` text IS in the file: `search` must hold the text "
                              "that is in the file now and `replace` the new text (they look swapped)",
                              hint=error.hint, field=error.field)
        raise error
    s = hits[0]
    search_lines = search.splitlines()
    while not search_lines[0].strip():  # blank lines around the search were not matched
        search_lines.pop(0)
    levels: dict[str, str] = {}
    for search_line, file_line in zip(search_lines, lines[s:s + m]):
        if search_line.strip():
            levels.setdefault(_indent(search_line), _indent(file_line))
    search_indent, file_indent = _indent(search_lines[0]), _indent(lines[s])
    ending = re.search(r"(\r\n|\r|\n)?\Z", lines[s + m - 1]).group(0)
    newline = re.search(r"(\r\n|\r|\n)?\Z", lines[s]).group(0) or "\n"
    new_lines = [_reindent(ln, levels, search_indent, file_indent) for ln in replace.splitlines()]
    block = newline.join(new_lines) + ending if new_lines else ""
    return "".join(lines[:s]) + block + "".join(lines[s + m:])


def _ambiguous(i: int, lines: list[int]) -> SpecError:
    shown = ", ".join(map(str, lines[:6])) + (", ..." if len(lines) > 6 else "")
    return SpecError(
        f"edits[{i}].search matches {len(lines)} places in the file, not one (at lines {shown})",
        hint="include more surrounding lines so it matches once", field=f"edits[{i}].search")


def _not_found(lines: list[str], stripped: list[str], wanted: list[str], i: int) -> SpecError:
    field = f"edits[{i}].search"
    missing = next((w for w in wanted if w and w not in stripped), None)
    if missing is None:
        where = stripped.index(wanted[0]) + 1
        message = (f"{field} was not found in the file: each of its lines is in the file, but not in this order "
                   f"together (its first line is at line {where})")
    else:
        scores = [difflib.SequenceMatcher(None, missing, s).ratio() if s else 0.0 for s in stripped]
        best = max(range(len(stripped)), key=scores.__getitem__) if stripped else None
        message = f"{field} was not found in the file: its line `{_clip(missing, 120)}` is not in the file"
        if best is not None:
            message += f"; the closest line is line {best + 1}: `{_clip(lines[best].rstrip(), 120)}`"
    return SpecError(message, hint="copy the search text exactly from the file (whole lines, as shown), or give a "
                     "whole new `source`", field=field)


# --------------------------------------------------------------------------------------------
# The space
# --------------------------------------------------------------------------------------------


class CodeSpace(SearchSpace):
    """PyTorch model files; static checks only (nothing of a candidate runs on this side).

    The seed (what ``sample`` mutates and edits apply to without a base) is ``seed_source``, or
    the task's file from :mod:`evaluator.models.seeds`.
    """

    name: ClassVar[str] = "code"
    proposal_schema: ClassVar[type[BaseModel]] = CodeSpec
    llm_schema: ClassVar[type[BaseModel]] = CodeProposal

    def __init__(self, input_shape: tuple[int, ...] | None = None, num_classes: int | None = None, *,
                 max_params: int | None = None, max_flops: int | None = None, task: str | None = None,
                 seed_source: str | None = None) -> None:
        super().__init__(input_shape, num_classes, max_params=max_params, max_flops=max_flops)
        self.task = task
        self._seed_text = seed_source

    @property
    def seed(self) -> str:
        """The seed file's text (read on first use)."""
        if self._seed_text is None:
            from evaluator.models.seeds import seed_source

            self._seed_text = seed_source(self.task)
        return self._seed_text

    # -- validation ------------------------------------------------------------------

    def validate(self, spec: Any) -> dict[str, Any]:
        """``{"source": str}`` (or the text itself) -> ``{"source", "training"}``; ``training``
        is always derived from the file, whatever the input says."""
        if isinstance(spec, str):
            spec = {"source": spec}
        if not isinstance(spec, dict):
            raise SpecError(f"a code spec must be a JSON object with a `source` string, got {type(spec).__name__}",
                            hint='emit {"source": "<the whole Python file>"}')
        unknown = [k for k in spec if k not in ("source", "training")]
        if unknown:
            raise SpecError(f"unknown field {unknown[0]!r} in a code spec{did_you_mean(str(unknown[0]), ['source'])}",
                            hint="a code spec has one field, `source`; training settings go in the file's TRAINING "
                                 "dict", field=str(unknown[0]))
        if "source" not in spec:
            raise SpecError("a code spec needs `source`: the whole Python file",
                            hint='emit {"source": "<the whole Python file>"}', field="source")
        parsed = parse_source(spec["source"])
        return {"source": parsed.text, "training": parsed.training}

    def canonical_key(self, spec: dict[str, Any]) -> str:
        source = spec["source"] if isinstance(spec, dict) else spec
        try:
            text = ast.unparse(_without_docstrings(ast.parse(source)))
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            text = source  # an invalid file: its text is all there is
        return "code:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]

    def stats(self, spec: dict[str, Any]) -> dict[str, Any]:
        return {"lines": _count_lines(spec["source"]), "chars": len(spec["source"])}

    # -- baselines -------------------------------------------------------------------

    def sample(self, rng: random.Random) -> dict[str, Any]:
        """The seed with 1..3 knob mutations (it may come back to the seed when two cancel)."""
        spec = self.validate({"source": self.seed})
        for _ in range(rng.randint(1, 3)):
            spec = self.mutate(spec, rng)
        return spec

    def mutate(self, spec: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        """One knob or TRAINING key changed in the text (see the module docstring); always valid
        and different from ``spec``. Deterministic for a given ``rng`` state."""
        parsed = parse_source(spec["source"])
        key = self.canonical_key(spec)
        knobs = [(n, opts) for n, (v, _) in parsed.knobs.items() if (opts := _knob_options(n, v, parsed.choices))]
        training = [(k, opts) for k in _MUTABLE_TRAINING if (opts := _training_options(k, parsed.training[k]))]
        for _ in range(20):
            if knobs and (not training or rng.random() < _KNOB_WEIGHT):
                name, options = rng.choice(knobs)
                value, node = parsed.knobs[name]
                start, end = _span(parsed.text, node)
                new_text = _splice(parsed.text, start, end,
                                   _format_literal(rng.choice(options), parsed.text[start:end]))
            else:
                name, options = rng.choice(training)
                new_text = _set_training(parsed, name, rng.choice(options))
            child = self.validate({"source": new_text})
            if self.canonical_key(child) != key:
                return child
        raise SpecError("no knob or TRAINING edit changes this file", hint="add UPPER_CASE knobs to the file",
                        field="source")  # unreachable for a valid file: TRAINING always has options

    # -- text ------------------------------------------------------------------------

    def describe(self) -> str:
        training = "; ".join(_field_text(n, f) for n, f in Training.model_fields.items())
        lines = [
            "A candidate is one Python file (PyTorch) that defines `build_model(input_shape, num_classes)`: "
            "input_shape is (C, H, W) as a tuple of ints; it returns a torch.nn.Module that maps a float tensor "
            "(B, C, H, W), normalised per channel to mean 0 and std 1, to logits (B, num_classes) (no softmax).",
        ]
        if self.input_shape is not None or self.num_classes is not None:
            shape = "x".join(map(str, self.input_shape)) if self.input_shape else "?"
            lines.append(f"This task: input_shape (C, H, W) = {shape}, num_classes = {self.num_classes or '?'}"
                         + (f" ({self.task})" if self.task else "") + ".")
        limits = [f"at most {v:,} {what}" for v, what in ((self.max_params, "parameters"),
                                                          (self.max_flops, "FLOPs (multiply-accumulates per image)"))
                  if v is not None]
        if limits:
            lines.append("The built model may have " + " and ".join(limits) + "; the evaluator measures it.")
        lines += [
            "The evaluator trains the module with cross-entropy and the file's TRAINING recipe for the task's "
            "epochs (not yours to set), and measures accuracy on held-out data that the file never sees; it "
            "computes every metric itself.",
            "The file runs in a sandbox: no network, no files outside its scratch directory, limited memory and "
            "time. Use torch only (plus math, typing, functools); no downloads, no pretrained weights.",
            f"Static checks before anything runs: at most {MAX_CHARS:,} characters and {MAX_LINES} lines; the top "
            "level holds only the docstring, imports, def/class definitions and assignments (and "
            "`if __name__ == \"__main__\":`); `def build_model` takes exactly two positional parameters; every "
            "imported module must be installed.",
            "Knobs: UPPER_CASE module-level constants (WIDTH = 32, ACTIVATION = \"relu\"); CHOICES = "
            "{\"KNOB\": [values]} lists the values a knob may take. Keep the network valid for any knob value "
            "(padding kernel // 2, adaptive pooling before the head).",
            "TRAINING = {...} is a literal dict read without running the file (no names, calls or arithmetic); "
            f"keys and allowed values: {training}.",
            f"Proposals: `edits`, 1 to {MAX_EDITS} search/replace pairs applied in order to the shown file "
            "(each `search` copied exactly from the file, whole lines with their indentation, and matching exactly "
            "once; `replace` is its new text), with `source` left empty; only for a change too big for edits, a "
            "whole new file in `source` (the edits are then ignored). Change one idea at a time and leave the rest "
            "of the file as it is.",
        ]
        return "\n".join(lines)

    def summary(self, spec: dict[str, Any]) -> str:
        try:
            parsed = parse_source(spec["source"])
        except SpecError:
            return _clip("(invalid file) " + _docstring_line(None, spec.get("source", "")), SUMMARY_CHARS)
        knobs = " ".join(f"{n}={v}" for n, (v, _) in parsed.knobs.items())
        tr = parsed.training
        train = f"{tr['optimizer']} lr={tr['lr']:g} bs={tr['batch_size']}"
        if tr["augmentation"] != "none":
            train += f" aug={tr['augmentation']}"
        head = f"{knobs} {train}".strip()
        return _clip(f"{head} | {_docstring_line(parsed.tree, parsed.text)}", SUMMARY_CHARS)

    def edit_example(self, spec: dict[str, Any] | None, rng: random.Random) -> dict[str, Any] | None:
        """One knob mutation of ``spec`` (None: the seed) written as a one-line search/replace edit."""
        text = self.show(spec)
        child = self.mutate({"source": text}, rng)["source"]
        old, new = text.splitlines(), child.splitlines()
        for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
            if tag == "replace" and i2 - i1 == 1 and j2 - j1 == 1:
                return {"search": old[i1].strip(), "replace": new[j1].strip()}
        return None

    def show(self, spec: dict[str, Any] | None) -> str:
        """The whole file, as the LLM sees it (edits must copy their search text from it)."""
        return self.seed if spec is None else spec["source"]

    # -- proposals -------------------------------------------------------------------

    def apply_proposal(self, value: Any, base: dict[str, Any] | None) -> dict[str, Any]:
        """A :class:`CodeProposal` (dict or model) applied to ``base`` (None: the seed) ->
        ``{"source": new_text}``, not yet validated; SpecError names the edit that failed."""
        if isinstance(value, BaseModel):
            value = value.model_dump()
        if not isinstance(value, dict):
            raise SpecError(f"a code proposal must be an object with `edits` or `source`, got {type(value).__name__}",
                            hint='emit {"edits": [{"search": "...", "replace": "..."}]} or {"source": "..."}')
        source = value.get("source")
        if isinstance(source, str) and source.strip():  # a whole new file: the edits, if any, are ignored
            if len(source) > MAX_PROPOSAL_SOURCE:
                raise SpecError(f"source has {len(source)} characters; at most {MAX_PROPOSAL_SOURCE}",
                                hint="shorten the file, or give edits of the shown file instead", field="source")
            return {"source": source}
        try:
            proposal = CodeProposal.model_validate({"source": "", **value})
        except ValidationError as exc:
            raise spec_error_from_validation(exc, self.name, CodeProposal) from None
        text = base["source"] if base is not None else self.seed
        for i, edit in enumerate(proposal.edits):
            new = _apply_edit(text, edit.search, edit.replace, i)
            if new == text:
                raise SpecError(f"edits[{i}] changes nothing in the file",
                                hint="put the changed text in `replace`, or drop this edit", field=f"edits[{i}]")
            text = new
        return {"source": text}


__all__ = ["CodeProposal", "CodeSpace", "CodeSpec", "Edit", "MAX_CHARS", "MAX_LINES", "parse_source"]
