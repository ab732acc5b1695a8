"""Encodings: a validated spec as named numeric features, for the search's surrogate model.

``SearchSpace.encode(spec)`` returns ``{feature name: float}``; the surrogate
(agent.surrogate) turns the encodings of a run's candidates into a matrix (the union of the
names, a missing name is 0). Every space has one:

    any spec   ``flatten``: a choice (a string, a bool) becomes an indicator ``path=value``; a
               number ``path`` itself (an int as log2(1 + v): widths and depths act by ratio; a
               float as is, and ``log:path`` = log10(v) when 0 < v < 1, the scale a learning rate
               or weight decay acts on); a list of objects (stages) gives each element's
               features under ``path.i``, their sums over elements under ``path.*`` (total
               depth, how many stages of each block kind) and ``path.len``.
    + stats    where the space can count them without building anything: ``log10_params``,
               ``log10_flops`` (the layers space's static analysis).
    nb201      the operation on each of the 6 edges (indicators), how many edges carry each
               operation, and the path encoding of White et al. (BANANAS, 2021): how many paths
               from the input node to the output node carry each sequence of operations (1 to
               3 edges long) -- what the cell computes, blind to where an edge is drawn.
    declared   each slot's choice as an indicator, and a numeric slot's value as a number too.
    code       the file's TRAINING fields and its knobs (top-level literals, flattened as
               above), and how many times each ``nn.X`` layer class and each call appears in
               its source, parsed (ast), never run: candidate code is not executed in the
               trusted process.
"""

from __future__ import annotations

import ast
import math
from collections import Counter
from typing import Any


def flatten(value: Any, prefix: str = "") -> dict[str, float]:
    """Named numeric features of a JSON-like value (the module docstring gives the rules)."""
    out: dict[str, float] = {}
    _flatten(value, prefix, out)
    return out


def _flatten(value: Any, path: str, out: dict[str, float]) -> None:
    if isinstance(value, bool):
        out[f"{path}={str(value).lower()}"] = 1.0
    elif isinstance(value, int):
        out[path] = math.log2(1 + value) if value >= 0 else float(value)
    elif isinstance(value, float):
        if math.isfinite(value):
            out[path] = value
            if 0 < value < 1:
                out[f"log:{path}"] = math.log10(value)
    elif isinstance(value, str):
        out[f"{path}={value[:60]}"] = 1.0
    elif value is None:
        out[f"{path}=null"] = 1.0
    elif isinstance(value, dict):
        for key, item in value.items():
            _flatten(item, f"{path}.{key}" if path else str(key), out)
    elif isinstance(value, (list, tuple)):
        out[f"{path}.len"] = float(len(value))
        for i, item in enumerate(value):
            element: dict[str, float] = {}
            _flatten(item, "", element)
            for key, number in element.items():
                out[f"{path}.{i}.{key}"] = number
                total = f"{path}.*.{key}"
                out[total] = out.get(total, 0.0) + number


def count_stats(stats: dict[str, Any]) -> dict[str, float]:
    """``log10_params`` and ``log10_flops`` from a space's static counts, where it has them."""
    out = {}
    for name in ("params", "flops"):
        value = stats.get(name)
        if isinstance(value, (int, float)) and value > 0:
            out[f"log10_{name}"] = math.log10(value)
    return out


def source_features(tree: ast.Module) -> dict[str, float]:
    """How often each ``nn.X`` (or ``torch.nn.X``) class and each other called name appears."""
    calls: Counter[str] = Counter()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute):
                calls[f"call:{func.attr}"] += 1
            elif isinstance(func, ast.Name):
                calls[f"call:{func.id}"] += 1
    out = {name: math.log2(1 + n) for name, n in calls.items()}
    out["source_statements"] = math.log2(1 + sum(isinstance(n, ast.stmt) for n in ast.walk(tree)))
    return out
