"""Changing a model file's text: new literal values spliced over old ones (``mutate``'s knob and
``TRAINING`` edits) and the LLM's search/replace edits applied to a file. Every other byte of
the file stays as it was."""

from __future__ import annotations

import ast
import difflib
import math
import re
from typing import Any, get_args

from evaluator.errors import SpecError
from evaluator.recipe import Training
from evaluator.spaces.code.source import clip, ParsedFile, span

INT_CAP = 1024  # doubling an int knob stops here
# What the Training schema allows for the keys mutation draws from a table.
_TRAINING_TABLES: dict[str, tuple[Any, ...]] = {
    "optimizer": get_args(Training.model_fields["optimizer"].annotation),
    "schedule": get_args(Training.model_fields["schedule"].annotation),
    "augmentation": get_args(Training.model_fields["augmentation"].annotation),
    "batch_size": get_args(Training.model_fields["batch_size"].annotation),
    "weight_decay": (0.0, 1e-5, 1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05),
    "label_smoothing": (0.0, 0.05, 0.1, 0.2, 0.3),
}
_LR_BOUNDS = (1e-5, 1.0)


# --------------------------------------------------------------------------------------------
# Mutation: new literal values, spliced into the text
# --------------------------------------------------------------------------------------------


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def _round(x: float) -> float:
    return float(f"{x:.6g}")


def knob_options(name: str, value: Any, choices: dict[str, list[Any]]) -> list[Any]:
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


def training_options(key: str, current: Any) -> list[Any]:
    if key == "lr":
        lo, hi = _LR_BOUNDS
        return sorted({min(hi, max(lo, _round(current * f))) for f in (2.0, 0.5)} - {current})
    return [v for v in _TRAINING_TABLES[key] if not _same(v, current) and v != current]


def format_literal(value: Any, old_text: str | None = None) -> str:
    if isinstance(value, str):
        quote_double = old_text is None or old_text.lstrip().startswith('"')
        if quote_double and value.isprintable() and '"' not in value and "\\" not in value:
            return f'"{value}"'
        return repr(value)
    return repr(value)  # bool, int, float: repr is a valid literal (2.0, 0.003, 1e-05, True)


def splice(text: str, start: int, end: int, new: str) -> str:
    return text[:start] + new + text[end:]


def set_training(parsed: ParsedFile, key: str, value: Any) -> str:
    """The text with TRAINING[key] set to ``value``: the old value's span replaced, or the key
    inserted just after the dict's opening brace, or a TRAINING line appended to the file."""
    text, node = parsed.text, parsed.training_node
    literal = format_literal(value)
    if node is None:
        sep = "" if text.endswith(("\n", "\r")) or not text else "\n"
        return f'{text}{sep}TRAINING = {{"{key}": {literal}}}\n'
    for k, v in reversed(list(zip(node.keys, node.values))):  # the last duplicate key is the one in effect
        if isinstance(k, ast.Constant) and k.value == key:
            start, end = span(text, v)
            return splice(text, start, end, format_literal(value, text[start:end]))
    start, _ = span(text, node)  # text[start] is "{"
    entry = f'"{key}": {literal}' + (", " if node.keys else "")
    return splice(text, start + 1, start + 1, entry)


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


def apply_edit(text: str, search: str, replace: str, i: int) -> str:
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
        message = f"{field} was not found in the file: its line `{clip(missing, 120)}` is not in the file"
        if best is not None:
            message += f"; the closest line is line {best + 1}: `{clip(lines[best].rstrip(), 120)}`"
    return SpecError(message, hint="copy the search text exactly from the file (whole lines, as shown), or give a "
                     "whole new `source`", field=field)
