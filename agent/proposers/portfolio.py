"""The proposer portfolio: each proposal comes from one of several operators, chosen by a bandit.

Operators:

- ``llm``: the LLM proposes from the history (the LLM proposer's prompt);
- ``llm_mutation``: the LLM edits a parent chosen by tournament from the recent population;
- ``mutation``: a single-edit mutation of a tournament-chosen parent (regularized evolution's
  operator, available from the first finished candidate instead of after a random population);
- ``random``: a uniform sample from the space.

The LLM operators exist only when an LLM is configured; the mutation operators only once a
candidate has finished ``ok``. Each time a proposal is needed the bandit (Thompson sampling on a
discounted Beta posterior per operator) draws a plausible reward for every available operator
and takes the best draw, divided by the operator's measured cost when the cost is not simply
one evaluation (``cost="second"``: LLM and evaluation seconds; ``cost="dollar"``: LLM dollars).
An operator's reward for a finished candidate is the share of the run's earlier ``ok``
candidates it beats on validation accuracy (ties count half; 0.5 for the first): the measured
improvement it brought, on a scale that does not depend on the task. With several objectives,
"beats" is Pareto dominance (neither dominating counts half), and parents are picked by
``Objectives.pick``. A candidate that fails,
times out or is rejected as invalid earns 0; a pruned one (cancelled at the end) earns nothing.
So a weak model's share shrinks as its proposals lose, and a strong model's grows.

Duplicates are excluded by construction: every operator's output is checked against the
run's keys and the proposals of the same batch; a repeat is replaced by a mutation that is not
in the run (a bounded walk), then by a random sample that is not (bounded), so no evaluation is
spent on a duplicate while the space has room.

Four settings keep a weak model from costing a short search much, at little cost to a strong
one: the first ``warmup`` (3) proposals are random samples (a start no operator can spoil); the
LLM operators join once ``llm_after`` (8) candidates have finished (an LLM that proposes from the
history needs one, and a short search has no room to learn that a model is weak); an outcome
counts as ``evidence`` (3) pseudo-observations (the bandit exploits sooner); and the LLM
operators start from a sceptical prior, Beta(1, 2), the others from Beta(1, 1). Chosen with
bench/portfolio_standins.py: stand-in LLM operators that sample cells from a weak model's op
preferences (pooling and skips, as the offline 0.5B model) or a strong one's (3x3
convolutions), 200 seeds, NAS-Bench-201 CIFAR-10, mean 200-epoch test accuracy at 10 / 30
evaluations (standard errors 0.04-0.10):

    setting                               weak stand-in    strong stand-in
    defaults (llm_after 8)                92.65 / 93.46    92.81 / 93.79
    llm_after 0 (LLM right after warm-up) 92.42 / 93.30    92.95 / 93.83
    llm_after 0, prior Beta(1, 3)         92.58 / 93.40    92.84 / 93.65
    first settings (no warm-up, evidence  92.02 / 93.24    93.42 / 94.03
      1, Beta(1, 1), llm_after 0)
    evolution: 92.49 / 93.33; the portfolio without LLM operators: 92.64 / 93.46

With the first settings the real offline model took 35% of the proposals and the portfolio lost
to evolution; with llm_after 0 it lost 0.1 points at 10 evaluations (docs/benchmarks.md).
``--llm-after 0`` lets a model known to be strong in from the start.

Parents are the best of ``tournament`` (10) candidates drawn from the ``population`` (20) most
recent ``ok`` ones: stronger selection than evolution's 5, because the portfolio starts mutating
after the first result rather than after a random population. Measured on NAS-Bench-201
CIFAR-10 without LLM operators (60 seeds, 200-epoch test accuracy of the chosen cell): tournament
5 / 10 / 20 gave 93.31 / 93.54 / 93.48 at 30 evaluations and 93.80 / 93.92 / 94.04 at 60.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass, replace
from typing import Any, ClassVar, Literal

from agent.proposers.base import Proposal, ProposalContext, Proposer
from agent.proposers.llm import LLMProposer, unseen_mutation
from evaluator.errors import SpecError
from evaluator.objectives import objective_values
from evaluator.records import Candidate, Evaluation, Status
from evaluator.spaces import SearchSpace

OPERATORS = ("llm", "llm_mutation", "mutation", "random")
LLM_OPERATORS = ("llm", "llm_mutation")
RANDOM_TRIES = 200
CostUnit = Literal["evaluation", "second", "dollar"]


@dataclass
class Arm:
    """What the bandit knows of one operator."""

    wins: float = 0.0  # discounted sum of rewards
    losses: float = 0.0  # discounted sum of (1 - reward)
    proposals: int = 0
    outcomes: int = 0  # rewards received (finished or invalid candidates)
    reward_sum: float = 0.0  # undiscounted, for the report
    best: float | None = None  # best validation accuracy among its candidates
    seconds: float = 0.0  # LLM seconds of its proposals and training seconds of its candidates
    dollars: float = 0.0


@dataclass
class _Pending:
    operator: str
    llm_seconds: float
    llm_cost: float


class Portfolio(Proposer):
    name: ClassVar[str] = "portfolio"
    POPULATION: ClassVar[int] = 20
    TOURNAMENT: ClassVar[int] = 10

    def __init__(self, space: SearchSpace, seed: int = 0, *, llm: LLMProposer | None = None,
                 cost: CostUnit = "evaluation", population: int = POPULATION, tournament: int = TOURNAMENT,
                 discount: float = 0.97, evidence: float = 3.0, llm_prior: tuple[float, float] = (1.0, 2.0),
                 warmup: int = 3, llm_after: int = 8) -> None:
        super().__init__(space, seed)
        if cost not in ("evaluation", "second", "dollar"):
            raise ValueError(f"{cost=} must be evaluation, second or dollar")
        if not 0 < discount <= 1:
            raise ValueError(f"{discount=} must be in (0, 1]")
        if population < 1 or not 1 <= tournament <= population:
            raise ValueError(f"need 1 <= tournament ({tournament}) <= population ({population})")
        if evidence <= 0 or warmup < 0 or llm_after < 0 or min(llm_prior) <= 0:
            raise ValueError(f"need evidence > 0 ({evidence}), warmup >= 0 ({warmup}), llm_after >= 0 ({llm_after}) "
                             f"and a positive llm_prior ({llm_prior})")
        self.llm, self.cost, self.tournament, self.discount = llm, cost, tournament, discount
        self.evidence = evidence  # pseudo-observations one outcome counts for: higher exploits sooner
        self.warmup = warmup  # the first proposals are random samples: a start no operator can spoil
        self.llm_after = llm_after  # the LLM operators wait for this many outcomes
        self.priors = {op: (llm_prior if op in LLM_OPERATORS else (1.0, 1.0)) for op in OPERATORS}
        self.operators = OPERATORS if llm is not None else tuple(o for o in OPERATORS if o not in LLM_OPERATORS)
        self.arms = {op: Arm() for op in self.operators}
        # (candidate_id, spec, validation accuracy, objective vector) of the most recent ok candidates
        self.population: deque[tuple[str, dict[str, Any], float, tuple[float, ...]]] = deque(maxlen=population)
        self.scores: list[tuple[float, ...]] = []  # objective vectors of ok candidates, in arrival order
        self._pending: dict[str, _Pending] = {}  # canonical key -> who proposed it

    # -- proposing -------------------------------------------------------------------------

    def propose(self, n: int, context: ProposalContext) -> list[Proposal]:
        seen = set(context.seen)
        out = []
        for _ in range(n):
            op = self.choose()
            proposal = self._apply(op, replace(context, seen=frozenset(seen)))
            proposal.operator = op
            arm = self.arms[op]
            arm.proposals += 1
            try:
                key = self.space.canonical_key(self.space.validate(proposal.spec))
            except SpecError:  # only an LLM reply that stayed invalid after repairs: the search records it
                self._reward(op, 0.0, seconds=proposal.llm_seconds, dollars=proposal.llm_cost or 0.0)
                out.append(proposal)
                continue
            if key in seen:  # the bounded walks found nothing new near a crowded parent
                proposal.spec = self._unseen_random(seen)
                key = self.space.canonical_key(proposal.spec)
            seen.add(key)
            self._pending[key] = _Pending(op, proposal.llm_seconds, proposal.llm_cost or 0.0)
            out.append(proposal)
        return out

    def choose(self) -> str:
        """The operator for the next proposal: the best Thompson draw per unit of cost."""
        if sum(a.proposals for a in self.arms.values()) < self.warmup:
            return "random"
        outcomes = sum(a.outcomes for a in self.arms.values())
        available = [op for op in self.operators if (self.population or op not in ("mutation", "llm_mutation"))
                     and (outcomes >= self.llm_after or op not in LLM_OPERATORS)]
        draws = {op: self.rng.betavariate(self.priors[op][0] + self.arms[op].wins,
                                          self.priors[op][1] + self.arms[op].losses) / self._unit_cost(op)
                 for op in available}
        return max(available, key=lambda op: draws[op])

    def _unit_cost(self, op: str) -> float:
        if self.cost == "evaluation":
            return 1.0
        attr = "seconds" if self.cost == "second" else "dollars"
        total = sum(getattr(a, attr) for a in self.arms.values())
        outcomes = sum(a.outcomes for a in self.arms.values())
        if total <= 0 or outcomes == 0:
            return 1.0  # nothing measured yet: every operator costs the same
        overall = total / outcomes
        arm = self.arms[op]
        mean = getattr(arm, attr) / arm.outcomes if arm.outcomes else overall
        return (mean + 0.05 * overall) / overall  # relative cost; the floor keeps free operators finite

    def _apply(self, op: str, context: ProposalContext) -> Proposal:
        if op == "random":
            return Proposal(spec=self._unseen_random(set(context.seen)), rationale="uniform random sample")
        if op == "llm":
            return self.llm.propose_one(context)
        parent = self._tournament()
        if op == "llm_mutation":
            return self.llm.propose_one(context, parent=parent)
        parent_id, spec, fitness = parent
        return Proposal(spec=unseen_mutation(self.space, spec, context.seen, self.rng), parents=[parent_id],
                        rationale=f"single-edit mutation of the tournament winner {parent_id} (val {fitness:.4f})")

    def _tournament(self) -> tuple[str, dict[str, Any], float]:
        members = list(self.population)
        contenders = self.rng.sample(members, min(self.tournament, len(members)))
        return self.objectives.pick(contenders, [m[3] for m in contenders], self.rng)[:3]

    def _unseen_random(self, seen: set[str] | frozenset[str]) -> dict[str, Any]:
        spec = self.space.sample(self.rng)
        for _ in range(RANDOM_TRIES):
            if self.space.canonical_key(spec) not in seen:
                break
            spec = self.space.sample(self.rng)
        return spec

    # -- learning --------------------------------------------------------------------------

    def observe(self, candidate: Candidate, evaluation: Evaluation) -> None:
        pending = self._pending.pop(candidate.canonical_key or "", None)
        vector = None
        if evaluation.status is Status.OK and evaluation.val_accuracy is not None:
            vector = self.objectives.vector(objective_values(candidate, evaluation))
        if vector is not None:
            self.population.append((candidate.candidate_id, candidate.spec, evaluation.val_accuracy, vector))
        if pending is None or evaluation.status is Status.PRUNED:
            if vector is not None:
                self.scores.append(vector)
            return
        reward = 0.0
        if vector is not None:
            # the share of earlier ok candidates it beats (ties half): on accuracy, or by dominance
            reward = sum(self.objectives.compare(vector, s) for s in self.scores) / len(self.scores) if self.scores else 0.5
            self.scores.append(vector)
            arm = self.arms[pending.operator]
            value = evaluation.val_accuracy
            arm.best = value if arm.best is None else max(arm.best, value)
        self._reward(pending.operator, reward, seconds=pending.llm_seconds + evaluation.wall_seconds,
                     dollars=pending.llm_cost)

    def _reward(self, op: str, reward: float, *, seconds: float, dollars: float) -> None:
        for arm in self.arms.values():
            arm.wins *= self.discount
            arm.losses *= self.discount
        arm = self.arms[op]
        arm.wins += self.evidence * reward
        arm.losses += self.evidence * (1.0 - reward)
        arm.outcomes += 1
        arm.reward_sum += reward
        arm.seconds += seconds
        arm.dollars += dollars

    def stats(self) -> dict[str, Any]:
        """Per operator: proposals, outcomes, mean reward, best accuracy, seconds, dollars, and its share."""
        total = sum(a.proposals for a in self.arms.values()) or 1
        out = {}
        for op, arm in self.arms.items():
            row = asdict(arm)
            del row["wins"], row["losses"]
            row["mean_reward"] = round(arm.reward_sum / arm.outcomes, 4) if arm.outcomes else None
            row["share"] = round(arm.proposals / total, 4)
            row["seconds"], row["dollars"] = round(arm.seconds, 3), round(arm.dollars, 6)
            row["reward_sum"] = round(arm.reward_sum, 4)
            out[op] = row
        return {"cost": self.cost, "operators": out}

