"""The proposer interface: ask for proposals, tell outcomes.

``propose(n, context)`` is called whenever the pool has free slots; it returns up to ``n``
proposals (untrusted until the graph validates them). ``observe(candidate, evaluation)``
is called once per finished search evaluation, in the order results arrive. A proposer
seeded with the same seed and told the same outcomes proposes the same candidates.

``objectives`` says what "better" means (validation accuracy alone by default; with several
objectives, Pareto dominance): the search sets it before the first proposal, and proposers
that rank candidates (evolution's tournaments, the portfolio's parents and rewards) use it.

Duplicates never reach the pool: the graph drops a proposal whose canonical key is already
in the run and asks again, so a proposer does not need to track what was evaluated, but
may use ``context.seen`` to avoid wasting attempts. ``context.pending`` lists the candidates
under way (validated and waiting for a slot, training, or waiting at a rung), whose results
are not known yet: their keys are in ``seen`` too.

When the pool trains in the background, the search calls ``propose`` and ``observe`` on a
thread of their own (agent.engine.proposing), never two at once: a proposer needs no locks.
An outcome may then arrive while a proposal is being made; it is observed right after.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from evaluator.objectives import Objectives
from evaluator.records import Candidate, Evaluation
from evaluator.spaces import SearchSpace


@dataclass
class Proposal:
    spec: Any  # untrusted: validated by the space before anything else sees it
    parents: list[str] = field(default_factory=list)
    rationale: str | None = None
    model: str | None = None
    prompt_ref: str | None = None  # the LLM calls behind it (llm_calls.proposal)
    operator: str | None = None  # which of a portfolio's operators made it (recorded as proposer:operator)
    llm_seconds: float = 0.0  # time spent in LLM calls for it
    llm_cost: float | None = None  # dollars spent in LLM calls for it, when prices are configured
    error: str | None = None  # an LLM proposal that stayed invalid: the last problem found with it (recorded)
    selection: dict[str, Any] | None = None  # why a surrogate picked it (agent.surrogate.selector.Pick.why)


@dataclass
class ProposalContext:
    seen: frozenset[str]  # canonical keys already in the run (evaluated, queued or running)
    evaluations: int
    budget: int
    best: tuple[str, dict[str, Any], float] | None = None  # (candidate id, spec, val accuracy) of the run's best so far
    pending: tuple[tuple[str, dict[str, Any]], ...] = ()  # (candidate id, spec) of those queued or being evaluated


class Proposer(ABC):
    name: ClassVar[str]
    objectives: Objectives = Objectives()  # set by the search (run_search) before the first proposal

    def __init__(self, space: SearchSpace, seed: int = 0) -> None:
        self.space = space
        self.rng = random.Random(seed)

    @abstractmethod
    def propose(self, n: int, context: ProposalContext) -> list[Proposal]:
        """Up to ``n`` new proposals."""

    def observe(self, candidate: Candidate, evaluation: Evaluation) -> None:
        """Called with each finished search evaluation; baselines that ignore results skip it."""

    def stats(self) -> dict[str, Any] | None:
        """What the proposer learned, for the summary (the portfolio's operator statistics)."""
        return None
