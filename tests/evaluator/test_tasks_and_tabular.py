"""Tasks (locating the tables) and tabular evaluation (lookups, final report, the pool)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from evaluator.errors import SpecError, TableError, TaskError
from evaluator.tables.nb201 import SIGNAL_TABLE_NAME, final_table_name
from evaluator.pools.base import EvaluationPool, Job
from evaluator.records import Purpose, Status
from evaluator.spaces.nb201 import NUM_CELLS, parse_arch
from evaluator.pools.tabular import TabularBenchmark, TabularPool
from evaluator.tasks import TASK_NAMES, Task, describe_tasks, resolve_task
from tests.conftest import all_archs, write_tiny_tables

ARCHS = all_archs()
BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def tiny_score(i: int, arch: str) -> float:
    """The percent value write_tiny_tables puts in <dataset>-val for cifar10."""
    return 10.0 + 10.0 * arch.count("conv") + 0.001 * i


@pytest.fixture(scope="module")
def full_dir(tmp_path_factory) -> Path:
    return write_tiny_tables(tmp_path_factory.mktemp("full"), ARCHS)


@pytest.fixture(scope="module")
def full_bench(full_dir) -> TabularBenchmark:
    return TabularBenchmark(resolve_task("nb201-cifar10", benchmark_dir=full_dir))


@pytest.fixture(scope="module")
def full_bench100(full_dir) -> TabularBenchmark:
    """cifar100 has no final table in full_dir: the final report is the 12-epoch test column."""
    return TabularBenchmark(resolve_task("nb201-cifar100", benchmark_dir=full_dir))


@pytest.fixture
def partial_dir(tmp_path) -> Path:
    """Tables with only the first 10 cells (and the same 10 in the final table)."""
    return write_tiny_tables(tmp_path / "partial", ARCHS[:10])


@pytest.fixture
def small_dir(tmp_path) -> Path:
    """Both tables with 3 cells: enough for tests that only locate files."""
    return write_tiny_tables(tmp_path / "small", ARCHS[:3])


@pytest.fixture(scope="module")
def real_c10(nb201_dir) -> TabularBenchmark:
    return TabularBenchmark(resolve_task("nb201-cifar10", benchmark_dir=nb201_dir))


def job(arch: str, cid: str = "c1", purpose: Purpose = Purpose.SEARCH) -> Job:
    return Job(candidate_id=cid, spec=parse_arch(arch), purpose=purpose)


# --- resolve_task -----------------------------------------------------------------------


def test_task_names_and_descriptions():
    assert set(TASK_NAMES) == {"nb201-cifar10", "nb201-cifar100", "nb201-imagenet16"}
    rows = describe_tasks()
    tabular = [r for r in rows if r["kind"] == "tabular"]
    assert [r["task"] for r in tabular] == list(TASK_NAMES)
    assert all(r["space"] == "nb201" for r in tabular)
    training = {r["task"]: r for r in rows if r["kind"] == "train"}
    assert set(training) == {"digits", "cifar10", "file:...", "folder:..."}
    assert all(r["space"] == "layers" for r in training.values())


@pytest.mark.parametrize("name, suggestion", [("nb201-cifar1O", "nb201-cifar10"), ("cifar100", "nb201-cifar100"),
                                              ("nb201-imagenet", "nb201-imagenet16")])
def test_unknown_task_suggests_the_closest(name, suggestion, small_dir):
    with pytest.raises(TaskError) as info:
        resolve_task(name, benchmark_dir=small_dir)
    assert repr(name) in info.value.message and f"did you mean '{suggestion}'" in info.value.message
    for known in TASK_NAMES:
        assert known in info.value.hint


def test_unknown_task_is_reported_before_missing_data():
    with pytest.raises(TaskError) as info:
        resolve_task("mnist")
    assert "unknown task 'mnist'" in info.value.message and "did you mean" not in info.value.message


def test_no_benchmark_dir_says_what_to_pass():
    with pytest.raises(TaskError) as info:
        resolve_task("nb201-cifar10")
    err = info.value
    assert "nb201-cifar10" in err.message and "no benchmark directory" in err.message
    assert "--benchmark-dir" in err.hint and "--signal-table" in err.hint and "AGENT_BENCHMARK_DIR" in err.hint
    assert err.exit_code == 2


def test_missing_benchmark_dir_is_named(tmp_path):
    missing = tmp_path / "no-such-dir"
    with pytest.raises(TaskError) as info:
        resolve_task("nb201-cifar10", benchmark_dir=missing)
    assert "not found" in info.value.message and str(missing) in info.value.message
    assert SIGNAL_TABLE_NAME in info.value.hint


def test_benchmark_dir_that_is_a_file_is_rejected(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(TaskError) as info:
        resolve_task("nb201-cifar10", benchmark_dir=f)
    assert str(f) in info.value.message


def test_benchmark_dir_without_signal_table(tmp_path):
    (tmp_path / final_table_name("cifar10")).write_text("index,arch,cifar10_test_200ep\n")
    with pytest.raises(TaskError) as info:
        resolve_task("nb201-cifar10", benchmark_dir=tmp_path)
    assert str(tmp_path) in info.value.message and SIGNAL_TABLE_NAME in info.value.message
    assert "--signal-table" in info.value.hint


def test_resolved_task_fields(small_dir):
    task = resolve_task("nb201-cifar10", benchmark_dir=small_dir)
    assert task.kind == "tabular" and task.dataset == "cifar10" and task.signal_column == "cifar10"
    assert task.fidelity == 12 and task.default_space == "nb201" and task.num_classes == 10
    assert task.input_shape == (3, 32, 32) and task.metric == "accuracy" and task.default_budget > 0
    assert task.signal_table == (small_dir / SIGNAL_TABLE_NAME).resolve() and task.signal_table.is_absolute()
    assert task.final_table == (small_dir / final_table_name("cifar10")).resolve()
    with pytest.raises(ValidationError):
        task.fidelity = 200  # frozen


def test_imagenet16_uses_the_imagenet_columns(small_dir):
    task = resolve_task("nb201-imagenet16", benchmark_dir=small_dir)
    assert task.dataset == "imagenet16" and task.signal_column == "imagenet"
    assert task.input_shape == (3, 16, 16) and task.num_classes == 120
    assert task.final_table is None


def test_final_table_auto_detected_only_when_present(small_dir):
    assert resolve_task("nb201-cifar10", benchmark_dir=small_dir).final_table is not None
    assert resolve_task("nb201-cifar100", benchmark_dir=small_dir).final_table is None
    (small_dir / final_table_name("cifar10")).unlink()
    assert resolve_task("nb201-cifar10", benchmark_dir=small_dir).final_table is None


def test_relative_benchmark_dir_is_resolved(small_dir, monkeypatch):
    monkeypatch.chdir(small_dir.parent)
    task = resolve_task("nb201-cifar10", benchmark_dir=Path(small_dir.name))
    assert task.signal_table == (small_dir / SIGNAL_TABLE_NAME).resolve()


def test_signal_and_final_table_flags_override_the_dir(small_dir, tmp_path):
    other = write_tiny_tables(tmp_path / "other", ARCHS[:3])
    sig = other / SIGNAL_TABLE_NAME
    fin = other / final_table_name("cifar10")
    task = resolve_task("nb201-cifar10", benchmark_dir=small_dir, signal_table=sig, final_table=fin)
    assert task.signal_table == sig.resolve() and task.final_table == fin.resolve()
    # only the signal table overridden: the final table still comes from the dir
    task = resolve_task("nb201-cifar10", benchmark_dir=small_dir, signal_table=sig)
    assert task.signal_table == sig.resolve()
    assert task.final_table == (small_dir / final_table_name("cifar10")).resolve()


def test_signal_table_alone_needs_no_dir_and_has_no_final_table(tmp_path):
    d = write_tiny_tables(tmp_path / "t", ARCHS[:3])
    task = resolve_task("nb201-cifar10", signal_table=d / SIGNAL_TABLE_NAME)
    assert task.signal_table == (d / SIGNAL_TABLE_NAME).resolve() and task.final_table is None


def test_signal_table_flag_wins_over_a_dir_without_one(tmp_path):
    d = write_tiny_tables(tmp_path / "t", ARCHS[:3])
    empty = tmp_path / "empty"
    empty.mkdir()
    task = resolve_task("nb201-cifar10", benchmark_dir=empty, signal_table=d / SIGNAL_TABLE_NAME)
    assert task.signal_table == (d / SIGNAL_TABLE_NAME).resolve() and task.final_table is None


def test_missing_signal_table_file_fails_when_loaded(tmp_path):
    task = resolve_task("nb201-cifar10", signal_table=tmp_path / "gone.csv")
    with pytest.raises(TableError) as info:
        TabularBenchmark(task)
    assert "gone.csv" in info.value.message and "--signal-table" in info.value.hint


# --- TabularBenchmark -------------------------------------------------------------------


def test_search_evaluation_reports_validation_only(full_bench):
    i = ARCHS.index(BEST)
    ev = full_bench.evaluate(job(BEST, "best"))
    assert ev.status is Status.OK and ev.candidate_id == "best" and ev.purpose is Purpose.SEARCH
    assert ev.val_accuracy == pytest.approx(tiny_score(i, BEST) / 100)
    assert ev.test_accuracy is None
    assert ev.fidelity == 12 and ev.fidelity_unit == "epochs"
    assert len(ev.curve) == 1
    assert ev.curve[0].epoch == 12 and ev.curve[0].val_accuracy == ev.val_accuracy
    assert "cifar10-val" in ev.source and ev.error is None and ev.wall_seconds >= 0


def test_final_evaluation_reports_200_epoch_test(full_bench):
    i = ARCHS.index(BEST)
    ev = full_bench.evaluate(job(BEST, "best", Purpose.FINAL))
    assert ev.status is Status.OK and ev.purpose is Purpose.FINAL
    assert ev.val_accuracy == pytest.approx(tiny_score(i, BEST) / 100)
    assert ev.test_accuracy == pytest.approx(min(100.0, tiny_score(i, BEST) + 20) / 100)
    assert "200-epoch" in full_bench.final_source and final_table_name("cifar10") in full_bench.final_source
    assert ev.source == full_bench.final_source
    assert full_bench.warnings == []


def test_final_evaluation_falls_back_to_12_epoch_test(full_bench100):
    bench = full_bench100
    assert "12-epoch" in bench.final_source and "no 200-epoch table for cifar100" in bench.final_source
    i = ARCHS.index(BEST)
    ev = bench.evaluate(job(BEST, purpose=Purpose.FINAL))
    score = tiny_score(i, BEST)
    assert ev.val_accuracy == pytest.approx(score / 2 / 100)
    assert ev.test_accuracy == pytest.approx((score / 2 + 1) / 100)
    assert ev.source == bench.final_source


def test_real_tables_final_source(nb201_dir, real_c10):
    c10 = real_c10
    assert "200-epoch" in c10.final_source and c10.warnings == []
    c100_task = resolve_task("nb201-cifar100", benchmark_dir=nb201_dir)
    assert c100_task.final_table is None
    c100 = TabularBenchmark(c100_task)
    assert "12-epoch" in c100.final_source and "cifar100" in c100.final_source
    arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
    ev = c100.evaluate(job(arch, purpose=Purpose.FINAL))
    assert ev.val_accuracy == pytest.approx(0.5779999996948242)
    assert ev.test_accuracy == pytest.approx(0.5825999995727539)
    ev10 = c10.evaluate(job(arch, purpose=Purpose.FINAL))
    assert ev10.val_accuracy == pytest.approx(0.8283399999389648)
    assert ev10.test_accuracy == pytest.approx(0.9366)


def test_cell_missing_from_a_partial_table_fails_and_is_warned(partial_dir):
    bench = TabularBenchmark(resolve_task("nb201-cifar10", benchmark_dir=partial_dir))
    assert any(f"10 of {NUM_CELLS}" in w for w in bench.warnings)
    assert bench.evaluate(job(ARCHS[3])).status is Status.OK
    ev = bench.evaluate(job(BEST, "missing"))
    assert ev.status is Status.FAILED and ev.candidate_id == "missing"
    assert BEST in ev.error and "signal table" in ev.error
    assert ev.val_accuracy is None and ev.test_accuracy is None


def test_cell_missing_from_the_final_table_fails_the_final_evaluation(tmp_path):
    d = write_tiny_tables(tmp_path / "sig", ARCHS[:20])
    fin = write_tiny_tables(tmp_path / "fin", ARCHS[:5]) / final_table_name("cifar10")
    bench = TabularBenchmark(resolve_task("nb201-cifar10", benchmark_dir=d, final_table=fin))
    assert bench.evaluate(job(ARCHS[2], purpose=Purpose.FINAL)).status is Status.OK
    ev = bench.evaluate(job(ARCHS[12], purpose=Purpose.FINAL))
    assert ev.status is Status.FAILED and ARCHS[12] in ev.error and "final table" in ev.error
    assert ev.val_accuracy is not None and ev.test_accuracy is None
    # the search signal is still there
    assert bench.evaluate(job(ARCHS[12])).status is Status.OK


def test_partial_final_table_is_warned(tmp_path):
    d = write_tiny_tables(tmp_path / "sig", ARCHS[:20])
    fin = write_tiny_tables(tmp_path / "fin", ARCHS[:5]) / final_table_name("cifar10")
    bench = TabularBenchmark(resolve_task("nb201-cifar10", benchmark_dir=d, final_table=fin))
    assert any(fin.name in w and "5 of" in w for w in bench.warnings)


def test_bad_table_fails_at_construction(tmp_path):
    d = write_tiny_tables(tmp_path / "bad", ARCHS[:3])
    (d / SIGNAL_TABLE_NAME).write_text("index,arch,cifar10-test\n")
    with pytest.raises(TableError) as info:
        TabularBenchmark(resolve_task("nb201-cifar10", benchmark_dir=d))
    assert "cifar10-val" in info.value.message


def test_bad_final_table_fails_at_construction(tmp_path):
    d = write_tiny_tables(tmp_path / "badfinal", ARCHS[:3])
    (d / final_table_name("cifar10")).write_text("index,arch,accuracy\n0,x,1\n")
    with pytest.raises(TableError) as info:
        TabularBenchmark(resolve_task("nb201-cifar10", benchmark_dir=d))
    assert "_test_200ep" in info.value.message


def test_task_without_signal_table_is_not_tabular(partial_dir):
    task = resolve_task("nb201-cifar10", benchmark_dir=partial_dir).model_copy(update={"signal_table": None})
    with pytest.raises(TaskError) as info:
        TabularBenchmark(task)
    assert "not a tabular task" in info.value.message


def test_random_sample_average_uses_the_final_report(full_bench, full_bench100):
    expected = sum(min(100.0, tiny_score(i, a) + 20) for i, a in enumerate(ARCHS)) / len(ARCHS) / 100
    assert full_bench.random_sample_average() == pytest.approx(expected)
    # without a final table: the 12-epoch test column
    bench = full_bench100
    expected100 = sum(tiny_score(i, a) / 2 + 1 for i, a in enumerate(ARCHS)) / len(ARCHS) / 100
    assert bench.random_sample_average() == pytest.approx(expected100)


def test_random_sample_average_on_the_real_table(real_c10):
    avg = real_c10.random_sample_average()
    assert 0.5 < avg < 0.94  # fraction, well below the optimum 0.9437


# --- TabularPool ------------------------------------------------------------------------


def test_pool_is_an_evaluation_pool(full_bench):
    pool = TabularPool(full_bench)
    assert isinstance(pool, EvaluationPool) and pool.capacity == 1
    assert pool.in_flight == 0 and pool.free_slots() == 1 and pool.events() == []


def test_pool_submit_events_result(full_bench):
    pool = TabularPool(full_bench, capacity=1)
    assert pool.result("a") is None
    pool.submit(job(BEST, "a"))
    assert pool.in_flight == 1 and pool.free_slots() == 0
    assert pool.result("a") is not None and pool.result("a").status is Status.OK
    events = pool.events(timeout=5)
    assert len(events) == 1
    (ev,) = events
    assert ev.kind == "finished" and ev.candidate_id == "a" and ev.evaluation == pool.result("a")
    assert pool.in_flight == 0 and pool.free_slots() == 1
    assert pool.events(timeout=0) == []
    assert pool.result("a").val_accuracy == ev.evaluation.val_accuracy  # still there after collection


def test_pool_events_come_in_submission_order(full_bench):
    pool = TabularPool(full_bench, capacity=3)
    ids = ["x", "y", "z"]
    for cid, arch in zip(ids, ARCHS[100:103]):
        pool.submit(job(arch, cid))
        assert pool.free_slots() == 3 - (ids.index(cid) + 1)
    assert pool.in_flight == 3 and pool.free_slots() == 0
    events = pool.events()
    assert [e.candidate_id for e in events] == ids and all(e.kind == "finished" for e in events)
    assert pool.in_flight == 0 and pool.free_slots() == 3


def test_pool_cancel_is_a_no_op_and_unknown_result_is_none(full_bench):
    pool = TabularPool(full_bench)
    pool.submit(job(BEST, "a"))
    assert pool.cancel("a") is False and pool.cancel("nope") is False
    assert pool.result("nope") is None
    assert pool.result("a").status is Status.OK
    pool.close()


def test_pool_missing_cell_finishes_failed(partial_dir):
    pool = TabularPool(TabularBenchmark(resolve_task("nb201-cifar10", benchmark_dir=partial_dir)))
    pool.submit(job(BEST, "m"))
    (ev,) = pool.events()
    assert ev.evaluation.status is Status.FAILED and BEST in ev.evaluation.error


def test_pool_turns_unexpected_exceptions_into_failed(full_bench):
    pool = TabularPool(full_bench)
    pool.submit(Job(candidate_id="broken", spec={"edge_1_0": "none"}))  # not a validated spec
    ev = pool.result("broken")
    assert ev.status is Status.FAILED and ev.error.startswith("KeyError")
    assert [e.candidate_id for e in pool.events()] == ["broken"]


def test_pool_lets_user_errors_through(full_bench, monkeypatch):
    pool = TabularPool(full_bench)

    def boom(job):
        raise SpecError("bad spec", field="edge_1_0")

    monkeypatch.setattr(pool.benchmark, "evaluate", boom)
    with pytest.raises(SpecError):
        pool.submit(job(BEST, "e"))
    assert pool.in_flight == 0 and pool.result("e") is None


def test_pool_final_jobs_carry_test_accuracy(full_bench):
    pool = TabularPool(full_bench)
    pool.submit(job(BEST, "f", Purpose.FINAL))
    (ev,) = pool.events()
    assert ev.evaluation.purpose is Purpose.FINAL and ev.evaluation.test_accuracy is not None


def test_task_model_rejects_bad_values():
    with pytest.raises(ValidationError):
        Task(name="t", kind="tabular", description="d", dataset="x", input_shape=(1,), num_classes=1,
             default_budget=1, default_space="nb201", fidelity=1)
