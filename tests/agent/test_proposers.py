"""Proposers: the random and regularized-evolution baselines."""

from __future__ import annotations

import pytest

from agent.proposers import Portfolio, PROPOSERS, Proposal, ProposalContext, Proposer, make_proposer
from agent.proposers.evolution import RegularizedEvolution
from agent.proposers.random_search import RandomSearch
from evaluator.errors import UserInputError
from evaluator.records import Candidate, Evaluation, Status
from evaluator.spaces import get_space
from evaluator.spaces.nb201 import EDGE_FIELDS, OPS

SPACE = get_space("nb201")


def fitness(spec: dict) -> float:
    """A deterministic accuracy in [0, 1] that prefers some ops on some edges."""
    score = sum(OPS.index(spec[f]) * (k + 1) for k, f in enumerate(EDGE_FIELDS))
    return score / (4 * 21)


def ctx(seen=(), evaluations: int = 0, budget: int = 100) -> ProposalContext:
    return ProposalContext(seen=frozenset(seen), evaluations=evaluations, budget=budget)


def candidate(cid: str, spec: dict, parents=()) -> Candidate:
    return Candidate(candidate_id=cid, run_id="r", seq=int(cid[1:]), space="nb201", spec=spec,
                     canonical_key=SPACE.canonical_key(spec), parents=list(parents), proposer="test")


def evaluation(cid: str, status: Status = Status.OK, val: float | None = None) -> Evaluation:
    return Evaluation(candidate_id=cid, status=status, val_accuracy=val)


def drive(proposer: Proposer, steps: int, batch: int = 1, fail_every: int = 0) -> list[tuple[dict, list[str]]]:
    """Propose/observe like the graph does; returns (validated spec, parents) per candidate."""
    out: list[tuple[dict, list[str]]] = []
    seen: set[str] = set()
    while len(out) < steps:
        proposals = proposer.propose(batch, ctx(seen, len(out)))
        assert len(proposals) == batch
        for p in proposals:
            assert isinstance(p, Proposal)
            spec = SPACE.validate(p.spec)
            cid = f"c{len(out)}"
            seen.add(SPACE.canonical_key(spec))
            out.append((spec, list(p.parents)))
            failed = fail_every and len(out) % fail_every == 0
            ev = evaluation(cid, Status.FAILED) if failed else evaluation(cid, val=fitness(spec))
            proposer.observe(candidate(cid, spec, p.parents), ev)
    return out


def n_diff(a: dict, b: dict) -> int:
    return sum(a[f] != b[f] for f in EDGE_FIELDS)


# --- every proposer ---------------------------------------------------------------------


def test_registry_holds_the_baselines_and_the_portfolio():
    assert PROPOSERS == {"random": RandomSearch, "evolution": RegularizedEvolution, "portfolio": Portfolio}
    for name, cls in PROPOSERS.items():
        assert cls.name == name and issubclass(cls, Proposer)


@pytest.fixture(params=sorted(PROPOSERS))
def name(request) -> str:
    return request.param


def test_proposals_validate_in_the_space(name):
    proposer = make_proposer(name, SPACE, seed=0)
    assert isinstance(proposer, PROPOSERS[name])
    history = drive(proposer, 60)
    assert len(history) == 60
    for spec, parents in history:
        assert set(spec) == set(EDGE_FIELDS) and all(spec[f] in OPS for f in EDGE_FIELDS)
    assert len({SPACE.canonical_key(s) for s, _ in history}) > 10  # not stuck on one cell


def test_same_seed_same_observations_same_proposals(name):
    a = drive(make_proposer(name, SPACE, seed=42), 50)
    b = drive(make_proposer(name, SPACE, seed=42), 50)
    assert a == b


def test_first_proposals_do_not_depend_on_the_batch_size(name):
    one_batch = make_proposer(name, SPACE, seed=3).propose(10, ctx())
    single = make_proposer(name, SPACE, seed=3)
    one_by_one = [single.propose(1, ctx())[0] for _ in range(10)]
    assert [p.spec for p in one_batch] == [p.spec for p in one_by_one]


def test_different_seeds_differ(name):
    a = drive(make_proposer(name, SPACE, seed=1), 30)
    b = drive(make_proposer(name, SPACE, seed=2), 30)
    assert [s for s, _ in a] != [s for s, _ in b]
    assert [s for s, _ in a][:5] != [s for s, _ in b][:5]


def test_propose_zero_returns_nothing(name):
    assert make_proposer(name, SPACE, seed=0).propose(0, ctx()) == []


# --- make_proposer ----------------------------------------------------------------------


def test_make_proposer_unknown_name_suggests():
    with pytest.raises(UserInputError) as info:
        make_proposer("evolutoin", SPACE)
    err = info.value
    assert "'evolutoin'" in err.message and "did you mean 'evolution'" in err.message
    assert "random" in err.hint and "evolution" in err.hint


def test_make_proposer_unknown_far_name_has_no_suggestion():
    with pytest.raises(UserInputError) as info:
        make_proposer("genetic", SPACE)
    assert "'genetic'" in info.value.message and "did you mean" not in info.value.message


def test_make_proposer_passes_evolution_options():
    p = make_proposer("evolution", SPACE, seed=1, population=7, tournament=3)
    assert isinstance(p, RegularizedEvolution) and p.population_size == 7 and p.tournament == 3
    with pytest.raises(ValueError):
        make_proposer("evolution", SPACE, population=1)


def test_make_proposer_random_ignores_evolution_options():
    assert isinstance(make_proposer("random", SPACE, seed=1, population=7), RandomSearch)


# --- random search ----------------------------------------------------------------------


def test_random_search_has_no_parents_and_matches_space_sampling():
    import random

    proposals = RandomSearch(SPACE, seed=9).propose(10, ctx())
    rng = random.Random(9)
    assert [p.spec for p in proposals] == [SPACE.sample(rng) for _ in range(10)]
    assert all(p.parents == [] for p in proposals)


# --- regularized evolution --------------------------------------------------------------


@pytest.mark.parametrize("population, tournament", [(1, 1), (0, 1), (-5, 1), (5, 0), (5, 6), (2, -1)])
def test_evolution_rejects_bad_sizes(population, tournament):
    with pytest.raises(ValueError) as info:
        RegularizedEvolution(SPACE, 0, population=population, tournament=tournament)
    assert ("population" in str(info.value)) or ("tournament" in str(info.value))


def test_evolution_accepts_boundary_sizes():
    RegularizedEvolution(SPACE, 0, population=2, tournament=2)
    RegularizedEvolution(SPACE, 0, population=2, tournament=1)


def test_first_population_proposals_are_random_without_parents():
    evo = RegularizedEvolution(SPACE, seed=0, population=6, tournament=2)
    history = drive(evo, 6, batch=3)
    assert all(parents == [] for _, parents in history)
    assert len(evo.population) == 6


def test_initial_samples_are_counted_by_proposals_not_by_observations():
    evo = RegularizedEvolution(SPACE, seed=0, population=4, tournament=2)
    first = evo.propose(4, ctx())
    assert all(p.parents == [] for p in first)
    # nothing observed yet: the population is empty, so children are still random samples
    (extra,) = evo.propose(1, ctx())
    assert extra.parents == []


def test_later_proposals_mutate_one_member_by_one_edge():
    evo = RegularizedEvolution(SPACE, seed=5, population=5, tournament=3)
    drive(evo, 5)
    seen_ids = {f"c{i}" for i in range(5)}
    for step in range(5, 40):
        members = {cid: spec for cid, spec, *_ in evo.population}
        (p,) = evo.propose(1, ctx())
        assert len(p.parents) == 1 and p.parents[0] in members
        assert p.parents[0] in seen_ids
        assert n_diff(members[p.parents[0]], SPACE.validate(p.spec)) == 1
        assert p.parents[0] in p.rationale
        cid = f"c{step}"
        seen_ids.add(cid)
        spec = SPACE.validate(p.spec)
        evo.observe(candidate(cid, spec, p.parents), evaluation(cid, val=fitness(spec)))


def test_full_tournament_always_picks_the_best_member():
    evo = RegularizedEvolution(SPACE, seed=1, population=4, tournament=4)
    specs = [p.spec for p in evo.propose(4, ctx())]
    for i, (spec, val) in enumerate(zip(specs, [0.2, 0.9, 0.5, 0.1])):
        evo.observe(candidate(f"c{i}", spec), evaluation(f"c{i}", val=val))
    for p in evo.propose(10, ctx()):
        assert p.parents == ["c1"] and n_diff(specs[1], p.spec) == 1


def test_aging_removes_the_oldest_not_the_worst():
    evo = RegularizedEvolution(SPACE, seed=2, population=3, tournament=1)
    specs = [p.spec for p in evo.propose(3, ctx())] + [SPACE.sample(evo.rng) for _ in range(2)]
    vals = [0.99, 0.98, 0.1, 0.2, 0.3]  # the oldest are the best
    for i, (spec, val) in enumerate(zip(specs, vals)):
        evo.observe(candidate(f"c{i}", spec), evaluation(f"c{i}", val=val))
    assert [cid for cid, *_ in evo.population] == ["c2", "c3", "c4"]
    assert [fit for _, _, fit, _ in evo.population] == [0.1, 0.2, 0.3]
    assert all(p.parents[0] in {"c2", "c3", "c4"} for p in evo.propose(20, ctx()))


@pytest.mark.parametrize("status", [Status.FAILED, Status.TIMEOUT, Status.INVALID, Status.PRUNED, Status.STOPPED_EARLY])
def test_unsuccessful_evaluations_do_not_join(status):
    evo = RegularizedEvolution(SPACE, seed=0, population=3, tournament=1)
    (p,) = evo.propose(1, ctx())
    evo.observe(candidate("c0", p.spec), evaluation("c0", status, val=0.5 if status is Status.STOPPED_EARLY else None))
    assert len(evo.population) == 0


def test_ok_without_val_accuracy_does_not_join():
    evo = RegularizedEvolution(SPACE, seed=0, population=3, tournament=1)
    (p,) = evo.propose(1, ctx())
    evo.observe(candidate("c0", p.spec), evaluation("c0", Status.OK, val=None))
    assert len(evo.population) == 0


def test_failures_never_become_parents():
    evo = RegularizedEvolution(SPACE, seed=4, population=4, tournament=2)
    history = drive(evo, 60, fail_every=2)  # every even-numbered candidate (c1, c3, ...) fails
    failed = {f"c{i}" for i in range(60) if (i + 1) % 2 == 0}
    parents = [p for _, ps in history for p in ps]
    assert parents and not (set(parents) & failed)
    assert not ({cid for cid, *_ in evo.population} & failed)


def test_all_initial_failures_keep_sampling_randomly():
    evo = RegularizedEvolution(SPACE, seed=0, population=3, tournament=2)
    for i, p in enumerate(evo.propose(3, ctx())):
        evo.observe(candidate(f"c{i}", p.spec), evaluation(f"c{i}", Status.FAILED))
    more = evo.propose(5, ctx())
    assert all(p.parents == [] for p in more) and len(evo.population) == 0
    assert all(SPACE.validate(p.spec) for p in more)


def test_population_member_spec_is_not_aliased_to_the_child():
    evo = RegularizedEvolution(SPACE, seed=6, population=2, tournament=2)
    drive(evo, 2)
    before = [dict(spec) for _, spec, *_ in evo.population]
    for p in evo.propose(10, ctx()):
        p.spec["edge_1_0"] = "bogus"
    assert [dict(spec) for _, spec, *_ in evo.population] == before
