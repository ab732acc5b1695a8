"""Search spaces, by name. ``get_space("nb201")`` returns a ready instance."""

from __future__ import annotations

from evaluator.errors import UserInputError, did_you_mean
from evaluator.spaces.base import SearchSpace
from evaluator.spaces.nb201 import Nb201Space

SPACES: dict[str, type[SearchSpace]] = {Nb201Space.name: Nb201Space}


def get_space(name: str) -> SearchSpace:
    try:
        return SPACES[name]()
    except KeyError:
        raise UserInputError(
            f"unknown search space {name!r}{did_you_mean(name, SPACES)}",
            hint="known spaces: " + ", ".join(sorted(SPACES)),
        ) from None


__all__ = ["SPACES", "SearchSpace", "get_space"]
