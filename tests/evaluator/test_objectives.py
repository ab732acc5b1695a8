"""Objectives, constraints and the Pareto front."""

from __future__ import annotations

import random

import pytest

from evaluator.errors import UserInputError
from evaluator.objectives import Constraints, Objectives, dominates, objective_values, pareto_front
from evaluator.records import Candidate, Evaluation, Status


def test_parsing_puts_accuracy_first_and_names_bad_input():
    assert Objectives.parse(None).names == ("accuracy",) and not Objectives.parse(None).multi
    assert Objectives.parse("latency, accuracy").names == ("accuracy", "latency")
    assert Objectives.parse(["accuracy", "params", "flops"]).metrics == ("val_accuracy", "params", "flops")
    with pytest.raises(UserInputError, match="unknown objective 'latncy'.*did you mean 'latency'"):
        Objectives.parse("accuracy,latncy")
    with pytest.raises(UserInputError, match="do not include accuracy") as info:
        Objectives.parse("latency")
    assert "accuracy,latency" in info.value.hint
    with pytest.raises(UserInputError, match="twice"):
        Objectives.parse("accuracy,latency,latency")


def test_vectors_minimise_and_miss_nothing_silently():
    o = Objectives.parse("accuracy,latency")
    assert o.vector({"val_accuracy": 0.9, "latency_ms": 1.5}) == (-0.9, 1.5)
    assert o.vector({"val_accuracy": 0.9}) is None
    assert o.vector({"val_accuracy": 0.9, "latency_ms": float("nan")}) is None
    assert o.values({"val_accuracy": 0.9, "latency_ms": 1.5, "params": 3}) == {"val_accuracy": 0.9, "latency_ms": 1.5}


def test_dominance_and_the_front():
    assert dominates((-0.9, 1.0), (-0.8, 1.0)) and not dominates((-0.9, 1.0), (-0.9, 1.0))
    assert not dominates((-0.9, 2.0), (-0.8, 1.0))
    points = [("a", (-0.9, 2.0)), ("b", (-0.8, 1.0)), ("c", (-0.8, 1.5)), ("d", (-0.95, 3.0)), ("e", (-0.8, 1.0))]
    assert pareto_front(points) == ["a", "b", "d", "e"]  # c is dominated by b; equal b and e both stay
    o = Objectives.parse("accuracy,latency")
    assert o.compare((-0.9, 1.0), (-0.8, 2.0)) == 1.0 and o.compare((-0.8, 2.0), (-0.9, 1.0)) == 0.0
    assert o.compare((-0.9, 2.0), (-0.8, 1.0)) == 0.5
    single = Objectives()
    assert single.compare((-0.9,), (-0.8,)) == 1.0 and single.compare((-0.8,), (-0.8,)) == 0.5


def test_pick_takes_the_best_accuracy_alone_and_spreads_over_the_front_with_several():
    members = ["slow-accurate", "fast-weak", "dominated"]
    single = Objectives()
    assert single.pick(members, [(-0.95,), (-0.80,), (-0.95,)], random.Random(0)) == "slow-accurate"  # first of a tie
    o = Objectives.parse("accuracy,latency")
    vectors = [(-0.95, 10.0), (-0.80, 1.0), (-0.79, 11.0)]
    rng = random.Random(0)
    picks = [o.pick(members, vectors, rng) for _ in range(200)]
    assert set(picks) == {"slow-accurate", "fast-weak"}  # both ends of the front, never the dominated one
    assert 40 < picks.count("fast-weak") < 160


def test_constraints_describe_and_report_violations():
    c = Constraints(max_latency_ms=1.0, max_params=1000)
    assert c.any and not Constraints().any
    assert c.describe() == ["batch-1 inference latency at most 1 ms", "at most 1,000 parameters"]
    assert c.violations({"latency_ms": 0.5, "params": 900}) == []
    assert c.violations({"latency_ms": 1.25, "params": 1200, "flops": 10**9}) == [
        "batch-1 latency 1.25 ms exceeds --max-latency-ms 1", "parameters 1,200 exceeds --max-params 1000"]
    with pytest.raises(UserInputError, match="max_flops"):
        Constraints(max_flops=0)


def test_objective_values_prefer_the_probes_measurements():
    cand = Candidate(candidate_id="c", run_id="r", seq=0, space="layers", spec={}, proposer="p",
                     measurements={"latency_ms": 0.4, "params": 100, "flops": 5000})
    ev = Evaluation(candidate_id="c", status=Status.OK, val_accuracy=0.9, metrics={"params": 101, "latency_ms": None})
    assert objective_values(cand, ev) == {"params": 100, "flops": 5000, "latency_ms": 0.4, "val_accuracy": 0.9}
    bare = cand.model_copy(update={"measurements": {}})
    assert objective_values(bare, ev) == {"params": 101, "flops": None, "latency_ms": None, "val_accuracy": 0.9}
