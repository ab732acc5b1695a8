"""The evaluation-pool contract (evaluator.pools.base.EvaluationPool), checked the same way for
every pool: submit, events (exactly one ``finished`` per job, carrying its evaluation), result,
cancel, capacity and close. A pool class added to evaluator/pools must be added to POOLS here.

The tabular, lookup and replay pools answer in milliseconds; the training pool trains a small
network on the real digits data in a sandboxed worker (slow); the Ray pool does the same on a
Ray cluster started on loopback (ray)."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import evaluator.pools.ray  # noqa: F401 - every pool class is imported: the registry check sees it
import evaluator.pools.replay  # noqa: F401
import evaluator.pools.tabular  # noqa: F401
import evaluator.pools.training  # noqa: F401
from evaluator.pools.base import EvaluationPool, Job, PoolEvent
from evaluator.records import Evaluation, Purpose, Status
from evaluator.spaces import get_space
from sandbox.limits import Limits
from tests.conftest import all_archs, write_tiny_tables
from tests.evaluator.test_curves import cells, write_curves
from tests.evaluator.test_lookup import lookup_of, write_space

SLOW_START = "import time; time.sleep(30)"  # a job still running when the test cancels it


@dataclass
class Case:
    pool: EvaluationPool
    specs: list[dict]  # at least 3 distinct candidates
    cancel_inject: str | None = None  # the candidate-id suffix whose job starts slowly, where jobs run in the background


def _tabular(tmp: Path) -> Case:
    from evaluator.pools.tabular import TabularBenchmark, TabularPool
    from evaluator.tasks import resolve_task

    archs = all_archs()[:40]
    task = resolve_task("nb201-cifar10", benchmark_dir=write_tiny_tables(tmp / "tables", archs))
    space = get_space("nb201")
    return Case(TabularPool(TabularBenchmark(task)), [space.validate(a) for a in archs[:4]])


def _lookup(tmp: Path) -> Case:
    from evaluator.pools.tabular import TabularPool

    lookup = lookup_of(write_space(tmp / "space"))
    rng = random.Random(0)
    return Case(TabularPool(lookup), [lookup.space.sample(rng) for _ in range(4)])


def _replay(tmp: Path) -> Case:
    from evaluator.pools.replay import CurvePool
    from evaluator.spaces.nb201 import parse_arch
    from evaluator.tables.curves import load_curve_table

    archs = cells(6)
    write_curves(tmp / "curves.csv", archs, epochs=4)
    return Case(CurvePool(load_curve_table(tmp / "curves.csv"), capacity=2), [parse_arch(a) for a in archs[:4]])


def _training_specs(digits) -> list[dict]:
    """The 4 smallest of 20 samples: the contract is not about training time."""
    space = get_space("layers", input_shape=digits.input_shape, num_classes=digits.num_classes)
    rng = random.Random(0)
    return sorted((space.sample(rng) for _ in range(20)), key=lambda s: space.stats(s)["flops"])[:4]


def _training(tmp: Path, digits) -> Case:
    from evaluator.pools.training import TrainingPool

    pool = TrainingPool(digits, "layers", workdir=tmp / "work", epochs=2, capacity=1, threads=1,
                        limits=Limits(wall_seconds=300), test_inject={"c0099": SLOW_START})
    return Case(pool, _training_specs(digits), cancel_inject="c0099")


def _ray(tmp: Path, digits) -> Case:
    pytest.importorskip("ray", reason="the Ray extra is not installed (pip install 'archagent[ray]')")
    from evaluator.pools.ray import RayPool
    from evaluator.pools.ray_cluster import connect
    from sandbox.isolation import Isolation

    cluster = connect(None, num_cpus=2)
    pool = RayPool(digits, "layers", cluster=cluster, run_id="contract", workdir=tmp / "work", epochs=2, workers=1,
                   limits=Limits(wall_seconds=300), isolation=Isolation(), owns_cluster=True,
                   pool_options={"test_inject": {"c0099": SLOW_START}})
    return Case(pool, _training_specs(digits), cancel_inject="c0099")


POOLS = {
    "tabular": pytest.param("tabular"),
    "lookup": pytest.param("lookup"),
    "replay": pytest.param("replay"),
    "training": pytest.param("training", marks=pytest.mark.slow),
    "ray": pytest.param("ray", marks=[pytest.mark.ray, pytest.mark.slow]),
}
CLASSES = {"tabular": "TabularPool", "lookup": "TabularPool", "replay": "CurvePool", "training": "TrainingPool",
           "ray": "RayPool"}


@pytest.fixture(scope="module", params=list(POOLS.values()))
def case(request, tmp_path_factory) -> Iterator[Case]:
    tmp = tmp_path_factory.mktemp(request.param)
    if request.param in ("training", "ray"):
        made = {"training": _training, "ray": _ray}[request.param](tmp, request.getfixturevalue("digits"))
    else:
        made = {"tabular": _tabular, "lookup": _lookup, "replay": _replay}[request.param](tmp)
    try:
        yield made
    finally:
        made.pool.close()


def finish(pool: EvaluationPool, ids: set[str], timeout: float = 600) -> list[PoolEvent]:
    """Every event until each of ``ids`` has finished."""
    events, end = [], time.monotonic() + timeout
    while not ids <= {e.candidate_id for e in events if e.kind == "finished"}:
        assert time.monotonic() < end, f"no result within {timeout} s: {[(e.kind, e.candidate_id) for e in events]}"
        events += pool.events(timeout=5)
    return events


def test_every_pool_class_is_checked_here():
    found = {cls.__name__ for cls in EvaluationPool.__subclasses__()}
    assert found == set(CLASSES.values())


def test_a_search_job_finishes_once_with_its_evaluation(case):
    pool, spec = case.pool, case.specs[0]
    assert pool.free_slots() == pool.capacity - pool.in_flight
    pool.submit(Job(candidate_id="contract-c0001", spec=spec))
    events = finish(pool, {"contract-c0001"})
    finished = [e for e in events if e.kind == "finished"]
    assert len(finished) == 1 and isinstance(finished[0].evaluation, Evaluation)
    evaluation = finished[0].evaluation
    assert evaluation.candidate_id == "contract-c0001" and evaluation.purpose is Purpose.SEARCH
    assert evaluation.status is Status.OK and 0 <= evaluation.val_accuracy <= 1 and evaluation.test_accuracy is None
    assert pool.result("contract-c0001") == evaluation
    assert all(e.kind != "finished" for e in events[events.index(finished[0]) + 1:])
    assert pool.in_flight == 0 and pool.free_slots() == pool.capacity
    assert pool.events(timeout=0) == []  # nothing more comes of a finished job


def test_a_final_job_reads_the_test_split(case):
    pool = case.pool
    pool.submit(Job(candidate_id="contract-c0002", spec=case.specs[1], purpose=Purpose.FINAL))
    [evaluation] = [e.evaluation for e in finish(pool, {"contract-c0002"}) if e.kind == "finished"]
    assert evaluation.purpose is Purpose.FINAL and evaluation.status is Status.OK
    assert evaluation.test_accuracy is not None or evaluation.source  # a replay has no test split: it says so


def test_a_pool_takes_no_more_than_its_capacity(case):
    pool = case.pool
    if pool.epochs is None:
        pytest.skip("a table pool answers at submit time: a job never waits for a slot")
    ids = [f"contract-c00{10 + i}" for i in range(pool.capacity)]
    for cid, spec in zip(ids, case.specs):
        pool.submit(Job(candidate_id=cid, spec=spec))
    assert pool.free_slots() == 0
    with pytest.raises(RuntimeError, match="pool is full"):
        pool.submit(Job(candidate_id="contract-c0019", spec=case.specs[-1]))
    finish(pool, set(ids))
    assert pool.free_slots() == pool.capacity


def test_cancel_ends_a_running_job_with_the_status_and_reason_given(case):
    pool = case.pool
    cid = f"contract-{case.cancel_inject or 'c0003'}"
    pool.submit(Job(candidate_id=cid, spec=case.specs[2]))
    cancelled = pool.cancel(cid, status=Status.STOPPED_EARLY, reason="the contract says stop")
    events = finish(pool, {cid})
    [evaluation] = [e.evaluation for e in events if e.kind == "finished"]
    assert cancelled or not pool.background  # a job that runs on its own is still running now
    if cancelled:  # it ends as told
        assert evaluation.status is Status.STOPPED_EARLY and evaluation.error == "the contract says stop"
    else:  # computed at submit: nothing was left to cancel, and the result stands
        assert evaluation.status is Status.OK
    assert pool.result(cid) == evaluation and pool.in_flight == 0


def test_cancelling_an_unknown_candidate_changes_nothing(case):
    assert case.pool.cancel("contract-c9999") is False
    assert case.pool.in_flight == 0
