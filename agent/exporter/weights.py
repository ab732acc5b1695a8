"""Kept weights are untrusted data: the sandboxed worker wrote them.

A weights file is used only when it is unchanged since the pool kept it (the SHA-256 in the
``.json`` beside it), loads with ``torch.load(weights_only=True)`` (tensors and plain
containers only: loading runs no code), is a mapping of names to tensors with finite values,
and, when the network is known on this side (layers, nb201), has exactly the network's keys,
shapes and dtypes. A code-mode network is never built outside the sandbox, so there the keys
and shapes are checked when model.py loads the file (``load_state_dict(strict=True)``).
The first final run whose weights pass is used; every one that fails says why.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.exporter.facts import FinalRun

Reference = dict[str, tuple[tuple[int, ...], Any]]  # state_dict key -> (shape, dtype)


@dataclass(frozen=True)
class Chosen:
    seed: int | None
    test_accuracy: float
    path: Path
    state: dict[str, Any]  # name -> tensor, checked
    kept: dict[str, Any] | None  # the pool's .json beside the file (seed, epochs, input normalisation, ...)


def reference_of(model: Any) -> Reference:
    return {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}


def choose(finals: list[FinalRun], reference: Reference | None) -> tuple[Chosen | None, list[str], str | None]:
    """The first final run's weights that pass the checks; warnings for those that did not; and,
    when none is used, a note for the card saying why."""
    warnings: list[str] = []
    note = None
    for final in finals:
        seed = f"seed {final.seed}" if final.seed is not None else "a final run"
        if final.weights is None:
            note = note or final.weights_note
            continue
        kept = _kept_facts(final.weights)
        problem = _digest_problem(final.weights, kept)
        state = None
        if problem is None:
            state, problem = load_state(final.weights)
        if problem is None:
            problem = check_state(state, reference)
        if problem is not None:
            warnings.append(f"the weights of {seed} ({final.weights}) were not used: {problem}")
            note = f"the kept weights did not pass the checks ({problem[:200]})"
            continue
        return Chosen(seed=final.seed, test_accuracy=final.test_accuracy, path=final.weights, state=state,
                      kept=kept), warnings, None
    if not finals:
        note = "the candidate has no ok final evaluation (weights are kept only by final retrainings)"
    return None, warnings, note


def load_state(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """``torch.load(weights_only=True)``: (state, None), or (None, why not)."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - whatever the file holds, it is not weights we can use
        return None, f"it cannot be loaded as tensors only (torch.load weights_only=True): {type(exc).__name__}: " \
                     f"{str(exc).splitlines()[0][:300] if str(exc) else ''}"
    return state, None


def check_state(state: Any, reference: Reference | None) -> str | None:
    """Why ``state`` is not a state_dict for the network (None when it is one)."""
    import torch

    if not isinstance(state, dict):
        return f"it holds a {type(state).__name__}, not a state_dict (a mapping of names to tensors)"
    if not state:
        return "it is an empty state_dict"
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        return f"it is not a mapping of names to tensors (entry {str(bad[0])[:80]!r} is not)"
    nonfinite = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if nonfinite:
        return f"{nonfinite[0]} holds NaN or infinite values"
    if reference is None:
        return None
    missing, unexpected = sorted(set(reference) - set(state)), sorted(set(state) - set(reference))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} key(s) of the network missing ({', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} key(s) the network does not have ({', '.join(unexpected[:3])})")
        return "its keys do not match the network: " + "; ".join(parts)
    for key, (shape, dtype) in reference.items():
        tensor = state[key]
        if tuple(tensor.shape) != shape:
            return f"{key} has shape {tuple(tensor.shape)}, the network's is {shape}"
        if tensor.dtype != dtype:
            return f"{key} has dtype {tensor.dtype}, the network's is {dtype}"
    return None


def _kept_facts(path: Path) -> dict[str, Any] | None:
    try:
        facts = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return facts if isinstance(facts, dict) else None


def _digest_problem(path: Path, kept: dict[str, Any] | None) -> str | None:
    if kept is None or not isinstance(kept.get("sha256"), str):
        return None  # nothing recorded to compare with; the content checks still apply
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    if digest.hexdigest() != kept["sha256"]:
        return f"its SHA-256 differs from the one recorded when it was kept ({path.with_suffix('.json').name}): it changed since"
    return None
