"""The proposer portfolio: each proposal comes from one of several operators, chosen by a bandit,
and, guided by a surrogate (the default: ``selector`` set), from a pool that a model of the run's
results chooses from.

Guided (``selector``; agent.surrogate, agent.proposers.pool, docs/search.md "The surrogate"): each
step the free operators (mutation, crossover, random) fill the pool; the bandit's draw decides
only whether an LLM operator is called, and its proposal joins the pool; the selector picks the
evaluations by expected improvement; the first ``warmup`` picks come from the pool's random
samples (and prior runs' candidates), so that with evidence a search does not start climbing from
whatever the evidence liked best (NAS-Bench-201, synflow evidence, 20 seeds: CIFAR-100 at 50
evaluations 60.91 -> 61.03, CIFAR-10 at 10 93.89 -> 94.20; bench/search_nb201.py). An LLM
proposal the surrogate ranks above LLM_STANDING (0.75) of the pool is evaluated in place of the
batch's last pick (measured against 0.5, 0.9 and 1 with stand-in LLMs and a scripted strong model:
docs/search.md, "The surrogate"); the LLM operators are rewarded by how high their proposals ranked (``_standing``), then by the outcome when evaluated. With ``--prior``, the prior runs' best candidates join the
pool at the start (proposer ``portfolio:prior``; no operator is credited for them). The rest of
this docstring is the bandit, which is also the whole proposer with ``--surrogate off``.

Operators:

- ``llm``: the LLM proposes from the history (the LLM proposer's prompt);
- ``llm_mutation``: the LLM edits a parent chosen by tournament from the recent population;
- ``mutation``: a single-edit mutation of a tournament-chosen parent (regularized evolution's
  operator, available from the first finished candidate instead of after a random population);
- ``random``: a uniform sample from the space;
- ``crossover`` (guided only): each field from one of two good parents (flat specs).

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
counts as ``evidence_weight`` (3) pseudo-observations (the bandit exploits sooner); and the LLM
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
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, ClassVar, Literal

from agent.proposers.base import Proposal, ProposalContext, Proposer
from agent.proposers.llm import LLMProposer, unseen_mutation
from agent.proposers.pool import CandidatePool
from agent.surrogate.selector import EvidenceSource, PoolMember, Selector
from evaluator.errors import SpecError
from evaluator.objectives import objective_values
from evaluator.records import Candidate, Evaluation, Status
from evaluator.spaces import SearchSpace

OPERATORS = ("llm", "llm_mutation", "mutation", "crossover", "random")
LLM_OPERATORS = ("llm", "llm_mutation")
PRIOR = "prior"  # pool members from prior runs (--prior): evaluated as the selector decides, no operator to credit
RANDOM_TRIES = 200
LLM_STANDING = 0.75  # an LLM proposal ranked above this share of the pool is evaluated (docs/search.md says why)
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
    member: PoolMember | None = None  # from the pool: its encoding and evidence


class Portfolio(Proposer):
    name: ClassVar[str] = "portfolio"
    POPULATION: ClassVar[int] = 20
    TOURNAMENT: ClassVar[int] = 10

    def __init__(self, space: SearchSpace, seed: int = 0, *, llm: LLMProposer | None = None,
                 cost: CostUnit = "evaluation", population: int = POPULATION, tournament: int = TOURNAMENT,
                 discount: float = 0.97, evidence_weight: float = 3.0, llm_prior: tuple[float, float] = (1.0, 2.0),
                 warmup: int = 3, llm_after: int = 8, selector: Selector | None = None, pool_size: int = 256,
                 evidence: Sequence[EvidenceSource] = (), llm_standing: float = LLM_STANDING) -> None:
        super().__init__(space, seed)
        if cost not in ("evaluation", "second", "dollar"):
            raise ValueError(f"{cost=} must be evaluation, second or dollar")
        if not 0 < discount <= 1:
            raise ValueError(f"{discount=} must be in (0, 1]")
        if population < 1 or not 1 <= tournament <= population:
            raise ValueError(f"need 1 <= tournament ({tournament}) <= population ({population})")
        if not 0 <= llm_standing <= 1:
            raise ValueError(f"{llm_standing=} must be a share of the pool, in [0, 1]")
        if evidence_weight <= 0 or warmup < 0 or llm_after < 0 or min(llm_prior) <= 0:
            raise ValueError(f"need evidence_weight > 0 ({evidence_weight}), warmup >= 0 ({warmup}), llm_after >= 0 ({llm_after}) "
                             f"and a positive llm_prior ({llm_prior})")
        self.llm, self.cost, self.tournament, self.discount = llm, cost, tournament, discount
        self.evidence_weight = evidence_weight  # pseudo-observations one outcome counts for: higher exploits sooner
        self.warmup = warmup  # the first proposals are random samples: a start no operator can spoil
        self.llm_after = llm_after  # the LLM operators wait for this many outcomes
        self.llm_standing = llm_standing  # an LLM proposal ranked above this share of the pool is evaluated
        self.priors = {op: (llm_prior if op in LLM_OPERATORS else (1.0, 1.0)) for op in OPERATORS}
        self.operators = tuple(o for o in OPERATORS if (llm is not None or o not in LLM_OPERATORS)
                               and (selector is not None or o != "crossover"))  # crossover: a pool operator
        self.arms = {op: Arm() for op in self.operators}
        # (candidate_id, spec, validation accuracy, objective vector) of the most recent ok candidates
        self.population: deque[tuple[str, dict[str, Any], float, tuple[float, ...]]] = deque(maxlen=population)
        self.scores: list[tuple[float, ...]] = []  # objective vectors of ok candidates, in arrival order
        self._pending: dict[str, _Pending] = {}  # canonical key -> who proposed it
        # Surrogate-guided: the operators fill a pool, the selector picks what is evaluated.
        self.selector, self.evidence = selector, tuple(evidence)  # each fills pool members' evidence
        self.pool = CandidatePool(space, self.rng, size=pool_size) if selector is not None else None
        self.finished: list[tuple[str, dict[str, Any], float, tuple[float, ...]]] = []  # every ok candidate
        self._llm_made: dict[str, Proposal] = {}  # pool key -> the LLM proposal behind it
        self._seeded = False  # the prior runs' best candidates have joined the pool
        self._picked = 0  # pool members picked for evaluation

    # -- proposing -------------------------------------------------------------------------

    def propose(self, n: int, context: ProposalContext) -> list[Proposal]:
        if self.selector is not None:
            return self._propose_from_pool(n, context)
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

    def _propose_from_pool(self, n: int, context: ProposalContext) -> list[Proposal]:
        """The operators fill the pool (an LLM call only where the bandit draws an LLM operator);
        the selector picks ``n`` of its members."""
        seen = set(context.seen)
        out: list[Proposal] = []
        added = []
        if not self._seeded and self.selector.priors is not None:  # once, at the start (evicted first, unless picked)
            self._seeded = True
            added = [m for m in (self.pool.add(spec, PRIOR, seen) for spec in self.selector.priors.best_specs()) if m]
        added += self.pool.refill(seen, self._parents())
        made_now: list[str] = []
        for _ in range(n):
            op = self.choose(guided=True)
            if op not in LLM_OPERATORS:
                continue
            proposal = self._apply(op, replace(context, seen=frozenset(seen)))
            proposal.operator = op
            self.arms[op].proposals += 1
            member = self.pool.add(proposal.spec, op, seen)
            if member is None:  # invalid after repairs, or a repeat: recorded as it is, if invalid
                self._reward(op, 0.0, seconds=proposal.llm_seconds, dollars=proposal.llm_cost or 0.0)
                try:
                    self.space.validate(proposal.spec)
                except SpecError:
                    out.append(proposal)
                continue
            self._llm_made[member.key] = proposal
            added.append(member)
            made_now.append(member.key)
        if added:
            for source in self.evidence:
                source(added)
        members = list(self.pool.members.values())
        if self._picked < self.warmup:  # the first picks explore: nothing is mutated before them
            members = [m for m in members if m.operator not in ("mutation", "crossover")] or members
        picks = self.selector.choose(members, max(n - len(out), 0))
        self._picked += len(picks)
        standing = _standing(self.selector.last_scores)
        index = {m.key: i for i, m in enumerate(members)}
        # An LLM proposal the surrogate ranks in the pool's top LLM_STANDING is evaluated in place of
        # the batch's last pick: a strong model's proposals are taken often, a weak one's rarely.
        picked = {p.index for p in picks}
        for key in made_now:
            i = index[key]
            if i not in picked and standing[i] >= self.llm_standing and picks:
                dropped = next((p for p in reversed(picks) if members[p.index].key not in self._llm_made), None)
                if dropped is not None:
                    picks[picks.index(dropped)] = self.selector.pick(
                        i, dropped.why["batch_rank"], note=f"an LLM proposal ranked above {standing[i]:.0%} of the pool")
                    picked = {p.index for p in picks}
        for pick in picks:
            member = members[pick.index]
            op = member.operator
            proposal = self._llm_made.pop(member.key, None)
            if proposal is None:
                if op in self.arms:
                    self.arms[op].proposals += 1
                proposal = Proposal(spec=member.spec, operator=op, rationale=_rationale(op, pick.why))
            else:
                proposal.spec = member.spec
            proposal.selection = pick.why
            self.pool.remove(member.key)
            seen.add(member.key)
            self._pending[member.key] = _Pending(op, proposal.llm_seconds, proposal.llm_cost or 0.0, member)
            out.append(proposal)
        # An LLM proposal the selector passed over earns what the surrogate thought of it: the share of
        # the pool it ranked above (a strong model's proposals rank high even when another is picked).
        for key in made_now:
            if key in self._llm_made:
                left = self._llm_made[key]
                self._reward(left.operator, standing[index[key]], seconds=left.llm_seconds, dollars=left.llm_cost or 0.0)
        for key in [k for k in self._llm_made if k not in self.pool.members]:  # evicted from the pool
            del self._llm_made[key]
        return out

    def _parents(self) -> list[tuple[str, dict[str, Any]]]:
        """The best finished candidates, best first: on accuracy, or the Pareto front first."""
        if not self.finished:
            return []
        if self.objectives.multi:  # the front among the most accurate FRONT_OF (dominance checks are n^2)
            pool = sorted(self.finished, key=lambda m: -m[2])[:FRONT_OF]
            front = [m for m in pool if not any(self.objectives.compare(o[3], m[3]) == 1.0 for o in pool)]
            ranked = front + [m for m in pool if m not in front]
        else:
            ranked = sorted(self.finished, key=lambda m: -m[2])
        return [(m[0], m[1]) for m in ranked[:PARENTS]]

    def choose(self, guided: bool = False) -> str:
        """The operator for the next proposal: the best Thompson draw per unit of cost. Guided by
        the surrogate, only a draw of an LLM operator matters (the others fill the pool anyway)."""
        warming = sum(a.proposals for a in self.arms.values()) < self.warmup
        if warming and not guided:
            return "random"
        outcomes = sum(a.outcomes for a in self.arms.values())
        available = [op for op in self.operators if (self.population or op not in ("mutation", "llm_mutation", "crossover"))
                     and (outcomes >= self.llm_after and not warming or op not in LLM_OPERATORS)]
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
        values = objective_values(candidate, evaluation)
        if evaluation.status is Status.OK and evaluation.val_accuracy is not None:
            vector = self.objectives.vector(values)
        if vector is not None:
            self.population.append((candidate.candidate_id, candidate.spec, evaluation.val_accuracy, vector))
            self.finished.append((candidate.candidate_id, candidate.spec, evaluation.val_accuracy, vector))
        if self.selector is not None and evaluation.status is not Status.PRUNED and candidate.canonical_key:
            self._tell_selector(candidate, evaluation, values, pending.member if pending else None)
        if pending is None or evaluation.status is Status.PRUNED or pending.operator not in self.arms:  # prior: no arm
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

    def _tell_selector(self, candidate: Candidate, evaluation: Evaluation, values: dict[str, Any],
                       member: PoolMember | None) -> None:
        if member is None:  # not from the pool (a resumed run's history): encode it now
            try:
                spec = self.space.validate(candidate.spec)
                member = PoolMember(key=candidate.canonical_key, spec=spec, features=self.space.encode(spec),
                                    operator="history")
            except (SpecError, ValueError, SyntaxError):
                return
            for source in self.evidence:
                source([member])
        ok = evaluation.status is Status.OK and evaluation.val_accuracy is not None
        measured = {m: (values.get(m) if ok else None) for m in self.objectives.metrics}
        # the cost term's seconds: the training seconds (what a pick changes; a worker's start is the same for every
        # candidate), the worker's wall seconds where nothing reports them (a tabular lookup)
        seconds = evaluation.device_seconds or evaluation.wall_seconds or None
        self.selector.observe(member.key, member.features, measured, seconds, member.evidence)

    def _reward(self, op: str, reward: float, *, seconds: float, dollars: float) -> None:
        for arm in self.arms.values():
            arm.wins *= self.discount
            arm.losses *= self.discount
        arm = self.arms[op]
        arm.wins += self.evidence_weight * reward
        arm.losses += self.evidence_weight * (1.0 - reward)
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
        result: dict[str, Any] = {"cost": self.cost, "operators": out}
        if self.selector is not None:
            result["surrogate"] = {"pool": len(self.pool.members), "fit_seconds": round(self.selector.fit_seconds, 3)}
        return result


PARENTS = 8  # the best finished candidates the pool mutates and crosses
FRONT_OF = 300  # several objectives: parents come from the Pareto front of this many most accurate


def _standing(scores: Sequence[float]) -> list[float]:
    """Each score's share of the others it beats (ties half): 0 for the worst, 1 for the best."""
    n = len(scores)
    if n < 2:
        return [0.5] * n
    order = sorted(range(n), key=lambda i: scores[i])
    out = [0.0] * n
    i = 0
    while i < n:
        j = i
        while j + 1 < n and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 / (n - 1)
        i = j + 1
    return out


def _rationale(op: str, why: dict[str, Any]) -> str:
    made = {"mutation": "a mutation of one of the best candidates", "crossover": "a crossover of two of the best candidates",
            "random": "a random sample", PRIOR: "one of a prior run's best candidates"}.get(op, op)
    predicted = why.get("predicted_val_accuracy")
    low, high = why.get("interval80") or (None, None)
    if why.get("evaluations") and predicted is not None and low is not None:
        return (f"{made}, picked from a pool of {why['pool']} by {why['rule']}: predicted val {predicted:.4f} "
                f"(80%: {low:.4f}-{high:.4f})")
    return f"{made}, picked from a pool of {why['pool']} ({why['rule']})"

