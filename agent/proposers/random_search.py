"""Random search: uniform samples from the space. The baseline every search must beat."""

from __future__ import annotations

from typing import ClassVar

from agent.proposers.base import Proposal, ProposalContext, Proposer


class RandomSearch(Proposer):
    name: ClassVar[str] = "random"

    def propose(self, n: int, context: ProposalContext) -> list[Proposal]:
        return [Proposal(spec=self.space.sample(self.rng), rationale="uniform random sample") for _ in range(n)]
