"""Search spaces, by name.

``get_space("nb201")`` returns a ready instance; a space that checks shapes against a task
is given the task's shape: ``get_space("layers", input_shape=(1, 8, 8), num_classes=10,
max_params=None, max_flops=None)``. ``task`` (a task name) goes to the spaces that take it:
``code`` starts from that task's seed file. A declared space (``declared``) is made from its
file (``evaluator.spaces.declared``), not by name; ``space_class(name)`` gives the class of
every space a run or a candidate may record, for its capabilities (``base.SearchSpace``).
"""

from __future__ import annotations

import inspect
from typing import Any

from evaluator.errors import UserInputError, did_you_mean
from evaluator.spaces.base import SearchSpace
from evaluator.spaces.code import CodeSpace
from evaluator.spaces.declared import DeclaredSpace
from evaluator.spaces.layers import LayersSpace
from evaluator.spaces.nb201 import Nb201Space

SPACES: dict[str, type[SearchSpace]] = {Nb201Space.name: Nb201Space, LayersSpace.name: LayersSpace,
                                        CodeSpace.name: CodeSpace}
SPACE_CLASSES: dict[str, type[SearchSpace]] = {**SPACES, DeclaredSpace.name: DeclaredSpace}


def get_space(
    name: str,
    *,
    input_shape: tuple[int, ...] | None = None,
    num_classes: int | None = None,
    max_params: int | None = None,
    max_flops: int | None = None,
    task: str | None = None,
) -> SearchSpace:
    """A fresh instance of the space ``name`` for a task of this shape (all optional); ``task``
    reaches only the spaces whose constructor takes it."""
    try:
        cls = SPACES[name]
    except KeyError:
        raise UserInputError(
            f"unknown search space {name!r}{did_you_mean(name, SPACES)}",
            hint="known spaces: " + ", ".join(sorted(SPACES)),
        ) from None
    kwargs: dict[str, Any] = {"input_shape": input_shape, "num_classes": num_classes,
                              "max_params": max_params, "max_flops": max_flops}
    if "task" in inspect.signature(cls).parameters:
        kwargs["task"] = task
    return cls(**kwargs)


def space_class(name: str) -> type[SearchSpace]:
    """The class of space ``name`` (a declared space's too), for its capabilities."""
    try:
        return SPACE_CLASSES[name]
    except KeyError:
        raise UserInputError(f"unknown search space {name!r}{did_you_mean(name, SPACE_CLASSES)}",
                             hint="known spaces: " + ", ".join(sorted(SPACE_CLASSES))) from None


__all__ = ["SPACES", "SPACE_CLASSES", "SearchSpace", "get_space", "space_class"]
