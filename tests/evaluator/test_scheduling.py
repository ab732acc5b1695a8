"""Asynchronous successive halving: rungs, promotions (floor while searching, ceil when closing), pruning."""

from __future__ import annotations

import pytest

from evaluator.errors import UserInputError
from evaluator.early_stop.halving import SuccessiveHalving, check_rungs, default_rungs


def test_default_rungs_are_hyperbands_geometric_ladder():
    assert default_rungs(15, 3) == (2, 5)
    assert default_rungs(10, 3) == (1, 3)
    assert default_rungs(200, 3) == (7, 22, 67)  # at most three halvings (measured: bench/early_stop_curves.py)
    assert default_rungs(200, 2) == (25, 50, 100)
    assert default_rungs(8, 2) == (1, 2, 4)
    assert default_rungs(3, 3) == (1,)
    assert default_rungs(2, 3) == ()


def test_bad_rungs_name_the_fix():
    with pytest.raises(UserInputError, match=r"rungs \[15\] are not between 1 and 14") as info:
        check_rungs((5, 15), 15, 3)
    assert "2,5" in info.value.hint
    with pytest.raises(UserInputError, match="no rung fits"):
        SuccessiveHalving(2, None, 3)
    with pytest.raises(UserInputError, match="at least 2"):
        check_rungs((1,), 9, 1)
    assert check_rungs((5, 2, 5), 15, 3) == (2, 5)


def test_a_candidate_is_promoted_once_it_is_in_the_top_third_of_its_rung():
    sh = SuccessiveHalving(9, (1, 3), eta=3)
    assert sh.first_epochs == 1 and sh.next_epochs(0) == 3 and sh.next_epochs(1) == 9
    d = sh.reached("a", 1, 0.5)
    assert (d.action, d.rank, d.of) == ("wait", 1, 1)
    assert sh.promotions(4, closing=False) == []  # floor(1/3) = 0: one result is not evidence
    sh.reached("b", 1, 0.7)
    sh.reached("c", 1, 0.6)
    assert [p.candidate_id for p in sh.promotions(4, closing=False, commit=False)] == ["b"]
    (p,) = sh.promotions(4, closing=False)
    assert (p.candidate_id, p.next_epochs, p.rank, p.of) == ("b", 3, 1, 3)
    assert sh.promotions(4, closing=False) == []  # promoted once only
    assert set(sh.waiting) == {"a", "c"}
    # later arrivals compete with everything before them; a promotion is never taken back
    for cid, v in (("d", 0.9), ("e", 0.1), ("f", 0.2)):
        sh.reached(cid, 1, v)
    assert [p.candidate_id for p in sh.promotions(4, closing=False)] == ["d"]  # top 2 of 6: d, b


def test_higher_rungs_are_promoted_first_and_slots_are_respected():
    sh = SuccessiveHalving(9, (1, 3), eta=3)
    for cid, v in (("a", 0.1), ("b", 0.2), ("c", 0.3)):
        sh.reached(cid, 1, v)
    sh.promotions(1, closing=False)  # c goes to rung 1
    sh.reached("c", 3, 0.8)
    for cid, v in (("d", 0.4), ("e", 0.5), ("f", 0.6)):
        sh.reached(cid, 1, v)
    # rung 1 has one result (floor 0); closing lets its best through first (ceil 1), then rung 0
    assert [(p.candidate_id, p.rung) for p in sh.promotions(1, closing=True)] == [("c", 1)]
    # rung 0: ceil(6/3) = 2, the top two (f, e); c went on earlier, when it led with fewer results
    assert [(p.candidate_id, p.rung) for p in sh.promotions(5, closing=True)] == [("f", 0), ("e", 0)]


def test_closing_guarantees_one_full_training_and_prunes_the_rest():
    sh = SuccessiveHalving(9, (1, 3), eta=3)
    for cid, v in (("a", 0.1), ("b", 0.2)):  # fewer candidates than eta
        sh.reached(cid, 1, v)
    assert sh.promotions(2, closing=False) == []
    (p,) = sh.promotions(2, closing=True)  # ceil(2/3) = 1
    assert p.candidate_id == "b"
    sh.reached("b", 3, 0.5)
    (p,) = sh.promotions(2, closing=True)
    assert (p.candidate_id, p.next_epochs) == ("b", 9)
    pruned = sh.prune_waiting()
    assert [(d.candidate_id, d.action, d.epochs, d.rank, d.of) for d in pruned] == [("a", "prune", 1, 2, 2)]
    assert sh.waiting == {}
    assert sh.report()["rungs"] == [{"epochs": 1, "reached": 2, "promoted": 1}, {"epochs": 3, "reached": 1, "promoted": 1}]


def test_a_result_that_is_not_at_a_rung_is_refused_and_a_failed_candidate_waits_nowhere():
    sh = SuccessiveHalving(9, (1, 3), eta=3)
    with pytest.raises(ValueError, match="not a rung"):
        sh.reached("a", 2, 0.5)
    sh.reached("a", 1, 0.5)
    sh.forget("a")
    assert sh.waiting == {} and sh.prune_waiting() == []
