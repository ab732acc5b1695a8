"""Regularized (aging) evolution (Real et al., 2019).

The first ``population`` evaluations are uniform random samples. After that each child is
a single-edit mutation of the best of ``tournament`` members drawn at random from the
population; every new evaluated candidate joins the population and the oldest member
leaves. Candidates that did not finish ``ok`` do not join; while the population is empty
(every initial sample failed) children are random samples. With several objectives the
tournament's winner is chosen by ``Objectives.pick`` (random-weight Chebyshev over the
contenders), so parents come from the whole Pareto front.
"""

from __future__ import annotations

from collections import deque
from typing import Any, ClassVar

from agent.proposers.base import Proposal, ProposalContext, Proposer
from evaluator.objectives import objective_values
from evaluator.records import Candidate, Evaluation, Status
from evaluator.spaces import SearchSpace


class RegularizedEvolution(Proposer):
    name: ClassVar[str] = "evolution"

    def __init__(self, space: SearchSpace, seed: int = 0, population: int = 20, tournament: int = 5) -> None:
        super().__init__(space, seed)
        if population < 2:
            raise ValueError(f"{population=} must be at least 2")
        if not 1 <= tournament <= population:
            raise ValueError(f"{tournament=} must be between 1 and population ({population})")
        self.population_size = population
        self.tournament = tournament
        # (candidate_id, spec, validation accuracy, objective vector), oldest first
        self.population: deque[tuple[str, dict[str, Any], float, tuple[float, ...]]] = deque()
        self._seeded = 0  # random samples proposed so far for the initial population

    def propose(self, n: int, context: ProposalContext) -> list[Proposal]:
        out = []
        for _ in range(n):
            if self._seeded < self.population_size:
                self._seeded += 1
                out.append(Proposal(spec=self.space.sample(self.rng), rationale="initial population: random sample"))
                continue
            if not self.population:  # every initial sample failed: keep sampling
                out.append(Proposal(spec=self.space.sample(self.rng), rationale="random sample (empty population)"))
                continue
            k = min(self.tournament, len(self.population))
            contenders = [self.population[i] for i in self.rng.sample(range(len(self.population)), k)]
            parent_id, parent_spec, fitness, _ = self.objectives.pick(contenders, [m[3] for m in contenders], self.rng)
            out.append(Proposal(
                spec=self.space.mutate(parent_spec, self.rng),
                parents=[parent_id],
                rationale=f"single-edit mutation of the tournament winner {parent_id} (val {fitness:.4f})",
            ))
        return out

    def observe(self, candidate: Candidate, evaluation: Evaluation) -> None:
        if evaluation.status is not Status.OK or evaluation.val_accuracy is None:
            return
        vector = self.objectives.vector(objective_values(candidate, evaluation))
        if vector is None:  # an objective was not measured: it cannot be ranked
            return
        self.population.append((candidate.candidate_id, candidate.spec, evaluation.val_accuracy, vector))
        while len(self.population) > self.population_size:
            self.population.popleft()
