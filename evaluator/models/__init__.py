"""Build the torch network a validated spec describes.

This package runs inside the untrusted worker process: it imports only torch, numpy and the
search spaces (for their normalisation and shape rules), never the agent or the sandbox.
"""

from __future__ import annotations

from typing import Any

from torch import nn


def build_model(space_name: str, spec: Any, input_shape: tuple[int, ...], num_classes: int,
                **options: Any) -> nn.Module:
    """The network for ``spec`` in space ``space_name``, for inputs (C, H, W) and ``num_classes``.

    ``options`` go to the space's builder: ``nb201`` takes ``channels`` (C, default 16) and
    ``cells`` (N cells per stage, default 5); ``layers`` takes none (the spec says everything).
    The output is (B, num_classes) logits.
    """
    if space_name == "layers":
        from evaluator.models.layers_net import LayersNet

        if options:
            raise TypeError(f"the layers builder takes no options, got {sorted(options)}")
        return LayersNet(spec, tuple(input_shape), num_classes)
    if space_name == "nb201":
        from evaluator.models.nb201_net import Nb201Net

        return Nb201Net(spec, tuple(input_shape), num_classes, **options)
    raise ValueError(f"space_name={space_name!r} has no network builder; use 'layers' or 'nb201'")


__all__ = ["build_model"]
