"""Build the torch network a validated spec describes.

This package runs inside the untrusted worker process: it imports only torch, numpy and the
search spaces (for their normalisation and shape rules), never the agent or the sandbox.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn


def build_model(space_name: str, spec: Any, input_shape: tuple[int, ...], num_classes: int,
                **options: Any) -> nn.Module:
    """The network for ``spec`` in space ``space_name``, for inputs (C, H, W) and ``num_classes``.

    ``options`` go to the space's builder: ``nb201`` takes ``channels`` (C, default 16) and
    ``cells`` (N cells per stage, default 5); ``layers`` takes none (the spec says everything);
    ``code`` takes ``path``, the candidate's model file, which it imports (candidate code: call it
    only inside the sandboxed worker); ``declared`` takes ``path``, the space file's builder, whose
    ``build_model(spec, input_shape, num_classes)`` it calls (also only inside the worker).
    The output is (B, num_classes) logits.
    """
    builder = BUILDERS.get(space_name)
    if builder is None:
        raise ValueError(f"space_name={space_name!r} has no network builder; use " + ", ".join(map(repr, BUILDERS)))
    return builder(spec, tuple(input_shape), num_classes, **options)


def _layers(spec: Any, input_shape: tuple[int, ...], num_classes: int, **options: Any) -> nn.Module:
    from evaluator.models.layers_net import LayersNet

    if options:
        raise TypeError(f"the layers builder takes no options, got {sorted(options)}")
    return LayersNet(spec, input_shape, num_classes)


def _nb201(spec: Any, input_shape: tuple[int, ...], num_classes: int, **options: Any) -> nn.Module:
    from evaluator.models.nb201_net import Nb201Net

    return Nb201Net(spec, input_shape, num_classes, **options)


def _model_file(spec: Any, input_shape: tuple[int, ...], num_classes: int, **options: Any) -> nn.Module:
    """Only ever inside the sandboxed worker: this imports the candidate's file (candidate code)."""
    from evaluator.models.code import build_from_file

    if set(options) != {"path"}:
        raise TypeError(f"the code builder takes one option, path (the model file), got {sorted(options)}")
    return build_from_file(options["path"], input_shape, num_classes)


def _builder_file(spec: Any, input_shape: tuple[int, ...], num_classes: int, **options: Any) -> nn.Module:
    """Only ever inside the sandboxed worker: this runs the space file's builder."""
    from evaluator.models.code import build_from_builder

    if set(options) != {"path"}:
        raise TypeError(f"the declared builder takes one option, path (the builder file), got {sorted(options)}")
    return build_from_builder(options["path"], spec, input_shape, num_classes)


# The network builder of each space, by the space's name (the name a job records).
BUILDERS: dict[str, Callable[..., nn.Module]] = {"layers": _layers, "nb201": _nb201, "code": _model_file,
                                                  "declared": _builder_file}

__all__ = ["BUILDERS", "build_model"]
