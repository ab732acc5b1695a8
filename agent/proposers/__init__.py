"""Proposers by name. ``make_proposer("evolution", space, seed=0)``."""

from __future__ import annotations

from typing import Any

from agent.proposers.base import Proposal, ProposalContext, Proposer
from agent.proposers.evolution import RegularizedEvolution
from agent.proposers.portfolio import Portfolio
from agent.proposers.random_search import RandomSearch
from evaluator.errors import UserInputError, did_you_mean
from evaluator.spaces import SearchSpace

PROPOSERS: dict[str, type[Proposer]] = {p.name: p for p in (RandomSearch, RegularizedEvolution, Portfolio)}


def make_proposer(name: str, space: SearchSpace, seed: int = 0, **options: Any) -> Proposer:
    try:
        cls = PROPOSERS[name]
    except KeyError:
        raise UserInputError(
            f"unknown proposer {name!r}{did_you_mean(name, PROPOSERS)}",
            hint="choose one of " + ", ".join(PROPOSERS),
        ) from None
    if cls in (RegularizedEvolution, Portfolio):
        return cls(space, seed, **options)
    return cls(space, seed)


__all__ = ["PROPOSERS", "Portfolio", "Proposal", "ProposalContext", "Proposer", "make_proposer"]
