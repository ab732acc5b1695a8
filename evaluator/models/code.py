"""Build a code-mode candidate: import its model file and call ``build_model``.

Runs only inside the sandboxed worker (evaluator.worker): importing the file runs candidate
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
    import torch
    from torch import nn

    spec = importlib.util.spec_from_file_location(MODULE_NAME, path)
    if spec is None or spec.loader is None:
        raise ModelFileError(f"{path.name} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    build = getattr(module, "build_model", None)
    if not callable(build):
        raise ModelFileError("the model file defines no build_model(input_shape, num_classes) function")
    model = build(tuple(input_shape), int(num_classes))
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
