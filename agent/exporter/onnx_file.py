"""``model.onnx``: the exported network (with its weights when there are some) for ONNX runtimes.

Written with torch's ONNX exporter (``torch.onnx.export(dynamo=True)``, which needs onnx and
onnxscript: the ``onnx`` extra), one input ``images`` (batch, C, H, W) with a dynamic batch
size and one output ``logits``, everything in one file; then checked with
``onnx.checker.check_model(full_check=True)``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import logging
import sys
import warnings
from pathlib import Path
from typing import Any

from evaluator.errors import ArchAgentError, UserInputError

INSTALL_HINT = "pip install 'archagent[onnx]' (it installs onnx and onnxscript), or export without --onnx"


class OnnxExportError(ArchAgentError):
    """torch could not turn the network into ONNX, or the result failed onnx.checker."""


def require_onnx() -> None:
    """Fail early, before anything is written, when the ONNX tools are missing."""
    missing = [name for name in ("onnx", "onnxscript") if importlib.util.find_spec(name) is None]
    if missing:
        raise UserInputError(f"--onnx needs {' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
                             "not installed", hint=INSTALL_HINT)
    import torch

    if "dynamo" not in inspect.signature(torch.onnx.export).parameters:
        raise UserInputError(f"--onnx needs torch >= 2.5 (its torch.export-based ONNX exporter); this is torch "
                             f"{torch.__version__}", hint="upgrade torch, or export without --onnx")


def write_onnx(model: Any, input_shape: tuple[int, ...], path: Path) -> None:
    """Export ``model`` (eval mode) to ``path`` and check the file."""
    import onnx
    import torch

    model.eval()
    example = torch.zeros(2, *input_shape)  # batch 2: torch.export would fix a batch of 1 as a constant
    try:
        with _quiet():
            torch.onnx.export(model, (example,), str(path), dynamo=True, input_names=["images"],
                              output_names=["logits"], dynamic_shapes=({0: "batch"},), external_data=False,
                              verbose=False)
    except Exception as exc:  # noqa: BLE001 - the exporter raises many kinds; the message is what matters
        path.unlink(missing_ok=True)
        raise OnnxExportError(f"torch could not export the network to ONNX: {type(exc).__name__}: "
                              f"{str(exc).strip().splitlines()[0][:500] if str(exc).strip() else ''}",
                              hint="the other files of the export are written; run again without --onnx, or "
                                   "export model.py's build_model() with torch.onnx.export yourself") from None
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise OnnxExportError(f"{path} failed onnx.checker: {str(exc).strip()[:500]}",
                              hint="report it with the candidate's spec; model.py and weights.pt are usable") from None


@contextlib.contextmanager
def _quiet():
    """The exporter's progress lines and warnings go to stderr (stdout may carry --json) or nowhere."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
