"""Build a code-mode candidate (import its model file and call ``build_model``), or a declared
space's candidate (import the space's builder file and call ``build_model(choices, ...)``).

Runs only inside the sandboxed worker (evaluator.job.worker): importing the file runs candidate
code, which is hostile input. The trusted side never calls this; it checks the file
statically (evaluator.spaces.code) and computes every metric from the predictions the worker
sends. What this module checks is for clear error messages, not for security: the sandbox
is the boundary.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

MODULE_NAME = "candidate_model"


class ModelFileError(RuntimeError):
    """The model file imported, but ``build_model`` is missing or returned something unusable."""


def build_from_file(path: Path, input_shape: tuple[int, ...], num_classes: int) -> Any:
    """Import ``path`` and return ``build_model(input_shape, num_classes)``, checked to be a
    torch module whose output on a batch of two inputs is ``(2, num_classes)`` logits."""
    build = _build_function(path, MODULE_NAME, "the model file", "build_model(input_shape, num_classes)")
    return checked_network(build(tuple(input_shape), int(num_classes)), input_shape, num_classes)


def build_from_builder(path: Path, choices: dict[str, Any], input_shape: tuple[int, ...], num_classes: int) -> Any:
    """A declared space's candidate (evaluator.spaces.declared): import the space's builder file
    and return ``build_model(choices, input_shape, num_classes)``, checked as a model file's is."""
    build = _build_function(path, "space_builder", "the space's builder file",
                            "build_model(choices, input_shape, num_classes)")
    return checked_network(build(dict(choices), tuple(input_shape), int(num_classes)), input_shape, num_classes)


def _build_function(path: Path, module_name: str, what: str, signature: str) -> Any:
    """Import ``path`` (this runs its code) and return its ``build_model``."""
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ModelFileError(f"{path.name} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    build = getattr(module, "build_model", None)
    if not callable(build):
        raise ModelFileError(f"{what} defines no {signature} function")
    return build


def checked_network(model: Any, input_shape: tuple[int, ...], num_classes: int) -> Any:
    """``model``, once it is a torch module whose output on a batch of two inputs is ``(2, num_classes)``."""
    import torch
    from torch import nn

    if not isinstance(model, nn.Module):
        raise ModelFileError(f"build_model returned {type(model).__name__}, not a torch.nn.Module")
    model.eval()
    with torch.no_grad():
        out = model(torch.zeros(2, *input_shape))
    model.train()
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, num_classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelFileError(f"the network returned {shape} for a batch of 2 inputs of shape {tuple(input_shape)}; "
                             f"it must return logits shaped (2, {num_classes})")
    return model
