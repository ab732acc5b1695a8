"""The candidate pool of a surrogate-guided portfolio: many cheap proposals, none evaluated yet.

Each step the free operators fill the pool up to ``size`` members (the LLM operators add their
proposals beside them; agent.proposers.portfolio decides when an LLM call is worth it):

    mutation    single-edit mutations and two-edit walks of the best candidates so far (by the
                objectives: ``parents``), the most from the best; where the space lists them
                (``neighbours``: NAS-Bench-201), every neighbour of the 3 best that still
                have one not in the run (a local optimum gives its place) -- measured on
                NAS-Bench-201 CIFAR-10 (10 seeds, 100 evaluations, synflow evidence): without
                them 3 of 10 searches ended on a cell whose neighbour was the optimum, with
                them all 10 found it;
    crossover   for flat specs (NAS-Bench-201 cells, declared spaces): each field from one of two
                good parents at random;
    random      uniform samples from the space.

Members the selector did not pick stay in the pool for the next steps (a reservoir: their
encodings and evidence are computed once), up to ``size``; anything already in the run
(``seen``) leaves it. Every member is validated by the space and unique by canonical key.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from agent.surrogate.selector import PoolMember
from evaluator.errors import SpecError
from evaluator.spaces import SearchSpace

SHARES = {"mutation": 0.5, "crossover": 0.15, "random": 0.35}  # of each step's new members
NEW_PER_STEP = 64  # new members a step adds once the pool is full
TWO_EDITS = 0.3  # the share of mutations that take a second edit
NEIGHBOURHOODS = 3  # the best candidates whose whole neighbourhood joins the pool (spaces that list it)
TRIES = 4  # attempts per wanted member before an operator gives up for this step


class CandidatePool:
    def __init__(self, space: SearchSpace, rng: random.Random, *, size: int = 256) -> None:
        if size < 1:
            raise ValueError(f"pool {size=} must be at least 1")
        self.space, self.rng, self.size = space, rng, size
        self.members: dict[str, PoolMember] = {}  # canonical key -> member, oldest first
        self.flat = _is_flat(space)

    def refill(self, seen: set[str], parents: Sequence[tuple[str, dict[str, Any]]]) -> list[PoolMember]:
        """Drop members now in the run; add new ones (the pool's size when empty, else
        NEW_PER_STEP, evicting the oldest beyond ``size``); return the members added."""
        for key in [k for k in self.members if k in seen]:
            del self.members[key]
        wanted = self.size - len(self.members) if len(self.members) < self.size else NEW_PER_STEP
        added: list[PoolMember] = []
        quota = {op: round(wanted * share) for op, share in SHARES.items()}
        if not parents:
            quota = {"random": wanted}
        elif not self.flat or len(parents) < 2:
            quota = {"mutation": quota["mutation"] + quota["crossover"], "random": quota["random"]}
        for child in self._neighbourhoods(parents, seen):  # where the space lists them
            member = self._member(child, "mutation", seen)
            if member is not None:
                self.members[member.key] = member
                added.append(member)
        for op, count in quota.items():
            misses = 0
            made = 0
            while made < count and misses < TRIES * max(count, 1):
                spec = self._make(op, parents)
                member = self._member(spec, op, seen) if spec is not None else None
                if member is None:
                    misses += 1
                    continue
                self.members[member.key] = member
                added.append(member)
                made += 1
        while len(self.members) > self.size:  # the oldest leave first
            del self.members[next(iter(self.members))]
        return added

    def add(self, spec: Any, operator: str, seen: set[str]) -> PoolMember | None:
        """An outside proposal (an LLM's) joins the pool if it is valid and not in the run; one the
        pool already holds becomes the proposal's (its operator is credited if it is picked)."""
        try:
            key = self.space.canonical_key(self.space.validate(spec))
        except SpecError:
            return None
        if key in self.members and key not in seen:
            self.members[key].operator = operator
            return self.members[key]
        member = self._member(spec, operator, seen)
        if member is not None:
            self.members[member.key] = member
        return member

    def remove(self, key: str) -> None:
        self.members.pop(key, None)

    # -- operators --------------------------------------------------------------------------

    def _neighbourhoods(self, parents: Sequence[tuple[str, dict[str, Any]]], seen: set[str]) -> list[dict[str, Any]]:
        """Every neighbour of the NEIGHBOURHOODS best parents that still have one not in the run
        (a parent whose every neighbour is measured is a local optimum with nothing more to say:
        the next best takes its place); empty where the space does not list neighbours."""
        out: list[dict[str, Any]] = []
        listed = 0
        for _, spec in parents:
            if listed == NEIGHBOURHOODS:
                break
            children = self.space.neighbours(spec)
            if not children:
                break
            if all(self.space.canonical_key(child) in seen for child in children):
                continue
            listed += 1
            out += children
        return out

    def _make(self, op: str, parents: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, Any] | None:
        if op == "random":
            return self.space.sample(self.rng)
        if op == "mutation":
            # rank-weighted: the best parent is the likeliest
            weights = [1.0 / (i + 1) for i in range(len(parents))]
            _, spec = self.rng.choices(parents, weights=weights)[0]
            child = self.space.mutate(spec, self.rng)
            if self.rng.random() < TWO_EDITS:
                child = self.space.mutate(child, self.rng)
            return child
        a, b = self.rng.sample(list(parents[: max(2, min(len(parents), 8))]), 2)
        return {k: (a[1][k] if self.rng.random() < 0.5 else b[1][k]) for k in a[1]}

    def _member(self, spec: Any, operator: str, seen: set[str]) -> PoolMember | None:
        try:
            spec = self.space.validate(spec)
            key = self.space.canonical_key(spec)
        except SpecError:
            return None
        if key in seen or key in self.members:
            return None
        try:
            features = self.space.encode(spec)
        except (SpecError, ValueError, SyntaxError):
            return None
        known = {}
        if "log10_params" in features:
            known["params"] = 10 ** features["log10_params"]
        if "log10_flops" in features:
            known["flops"] = 10 ** features["log10_flops"]
        return PoolMember(key=key, spec=spec, features=features, operator=operator, known=known)


def _is_flat(space: SearchSpace) -> bool:
    """Specs whose fields are independent choices (crossover field by field makes sense)."""
    try:
        spec = space.sample(random.Random(0))
    except (SpecError, ValueError):
        return False
    return isinstance(spec, dict) and all(isinstance(v, (str, int, float, bool)) for v in spec.values()) \
        and not space.runs_candidate_code
