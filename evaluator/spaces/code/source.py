"""A model file read without running it: positions in its text, parsing, and every static check
of the ``code`` space (size, syntax, ``build_model``, top level, imports, ``TRAINING`` and
``CHOICES`` literals). Everything here is ``ast`` and text: nothing of a candidate runs."""

from __future__ import annotations

import ast
import functools
import importlib.util
import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from evaluator.errors import SpecError, did_you_mean
from evaluator.recipe import TRAINING_DEFAULTS, Training
from evaluator.spaces.base import field_text

MAX_CHARS = 20_000
MAX_LINES = 400

_KNOB_NAME = re.compile(r"[A-Z][A-Z0-9_]*\Z")
_SPECIAL = ("CHOICES", "TRAINING")
_SUGGESTED_MODULES = ("torch", "math", "typing", "functools", "collections", "itertools", "numpy", "torchvision")


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


def span(text: str, node: ast.AST) -> tuple[int, int]:
    """The character span [start, end) of ``node`` in ``text``."""
    starts = _line_starts(text)
    return (_offset(text, starts, node.lineno, node.col_offset),
            _offset(text, starts, node.end_lineno, node.end_col_offset))


def _line_text(text: str, lineno: int) -> str:
    lines = re.split(r"\r\n|\r|\n", text)
    return lines[lineno - 1] if 0 < lineno <= len(lines) else ""


def count_lines(text: str) -> int:
    return len(_line_starts(text)) - (1 if text.endswith(("\n", "\r")) else 0)


def _where(text: str, node: ast.AST) -> str:
    """``line N, column M: `the line``` for an error message (both 1-based)."""
    line = _line_text(text, node.lineno).strip()
    return f"line {node.lineno}, column {node.col_offset + 1}: `{clip(line, 120)}`"


def clip(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 3] + "..."


# --------------------------------------------------------------------------------------------
# Parsing and static checks
# --------------------------------------------------------------------------------------------


@dataclass
class ParsedFile:
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


def _collect(text: str, tree: ast.Module) -> ParsedFile:
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
    return ParsedFile(text=text, tree=tree, knobs=knobs, training_node=training_node, training=training,
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
        return None, dict(TRAINING_DEFAULTS)
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
                message += f" (got {err.get('input')!r}); allowed: {field_text(key, Training.model_fields[key])}"
            problems.append(message)
        line = _key_line(node, first) or node.lineno
        raise SpecError(
            f"line {line}: " + "; ".join(problems),
            hint="TRAINING keys: " + "; ".join(field_text(n, f) for n, f in Training.model_fields.items()),
            field=f"TRAINING[{first!r}]") from None
    if training["optimizer"] != "sgd":  # as in the layers space: momentum applies to sgd only
        training["momentum"] = TRAINING_DEFAULTS["momentum"]
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
                f"booleans, got {clip(repr(values), 80)}",
                hint='write e.g. CHOICES = {"ACTIVATION": ["relu", "gelu"], "KERNEL": [3, 5]}', field="CHOICES")
    return {k: list(v) for k, v in literal.items()}


def parse_source(source: Any) -> ParsedFile:
    """Every static check of a model file; SpecError (line, column, fix) on the first failure."""
    if not isinstance(source, str):
        raise SpecError(f"source must be the file's text as a string, got {type(source).__name__}",
                        hint="put the whole Python file in `source`", field="source")
    if len(source) > MAX_CHARS:
        raise SpecError(f"the file has {len(source):,} characters, over the limit of {MAX_CHARS:,}",
                        hint="make it shorter: remove unused code and long comments", field="source")
    lines = count_lines(source)
    if lines > MAX_LINES:
        raise SpecError(f"the file has {lines} lines, over the limit of {MAX_LINES}",
                        hint="make it shorter: remove unused code, reuse one block class", field="source")
    try:
        tree = ast.parse(source, filename="<candidate>")
    except SyntaxError as exc:
        where = f"line {exc.lineno}, column {exc.offset or 1}: " if exc.lineno else ""
        line = _line_text(source, exc.lineno).strip() if exc.lineno else ""
        raise SpecError(f"the file does not parse: {where}{exc.msg}" + (f": `{clip(line, 120)}`" if line else ""),
                        hint="fix the syntax there (brackets, colons, indentation, quotes)", field="source") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise SpecError(f"the file does not parse: {type(exc).__name__}: {clip(str(exc), 200)}",
                        hint="remove null bytes and very deep nesting", field="source") from None
    _check_top_level(source, tree)
    _check_build_model(source, tree)
    _check_imports(source, tree)
    return _collect(source, tree)


def without_docstrings(tree: ast.Module) -> ast.Module:
    for node in [tree, *_statements(tree)]:
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or ([] if isinstance(node, ast.Module) else [ast.Pass()])
    return tree


def docstring_line(parsed_tree: ast.Module | None, text: str) -> str:
    doc = ast.get_docstring(parsed_tree) if parsed_tree is not None else None
    if doc:
        return doc.strip().splitlines()[0].strip()
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
