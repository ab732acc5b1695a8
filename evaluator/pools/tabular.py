"""Tabular evaluation: look a cell up in benchmark tables instead of training it.

The search signal is the task's 12-epoch validation accuracy. The final report (only for
``Purpose.FINAL`` jobs) is the 200-epoch test accuracy when a final table is given, else the
12-epoch test accuracy; ``final_source`` says which.
"""

from __future__ import annotations

import time
from collections import deque

from evaluator.errors import ArchAgentError, TaskError
from evaluator.pools.lookup import Lookup
from evaluator.tables.nb201 import AccuracyTable, coverage_note, load_final_table, load_signal_table
from evaluator.pools.base import EvaluationPool, Job, PoolEvent
from evaluator.records import CurvePoint, Evaluation, Purpose, Status
from evaluator.spaces import get_space
from evaluator.tasks import Task


class TabularBenchmark:
    """Lookups for one tabular task. Loading validates the tables (TableError on a bad one)."""

    def __init__(self, task: Task) -> None:
        if task.kind != "tabular" or task.signal_table is None or task.signal_column is None:
            raise TaskError(f"task {task.name} is not a tabular task", hint="use an nb201-* task")
        self.task = task
        self.space = get_space(task.default_space)
        signal = load_signal_table(task.signal_table, task.signal_column)
        self._val = signal.column(f"{task.signal_column}-val")
        self._test12 = signal.column(f"{task.signal_column}-test")
        self._final: AccuracyTable | None = load_final_table(task.final_table) if task.final_table else None
        tables = (signal, self._final) if self._final is not None else (signal,)
        self.warnings = [w for w in map(coverage_note, tables) if w]
        if self._final is not None:
            self._test_final = next(iter(self._final.columns.values()))
            self.final_source = f"200-epoch test accuracy from {self._final.path.name}"
            self.final_fidelity = 200.0
        else:
            self._test_final = self._test12
            self.final_source = (
                f"12-epoch test accuracy from {signal.path.name} (no 200-epoch table for {task.dataset})"
            )
            self.final_fidelity = task.fidelity

    def evaluate(self, job: Job) -> Evaluation:
        start = time.perf_counter()
        key = self.space.canonical_key(job.spec)
        common = dict(candidate_id=job.candidate_id, purpose=job.purpose, fidelity=self.task.fidelity)
        if key not in self._val:
            return Evaluation(
                **common,
                status=Status.FAILED,
                error=f"cell {key} is not in the signal table {self.task.signal_table}",
                source=str(self.task.signal_table),
            )
        val = self._val[key]
        if job.purpose is Purpose.FINAL:
            test = self._test_final.get(key)
            common["fidelity"] = self.final_fidelity
            if test is None:
                table = self._final.path if self._final is not None else self.task.signal_table
                return Evaluation(
                    **common,
                    status=Status.FAILED,
                    val_accuracy=val,
                    error=f"cell {key} is not in the final table {table}",
                    source=self.final_source,
                )
            return Evaluation(
                **common,
                status=Status.OK,
                val_accuracy=val,
                test_accuracy=test,
                source=self.final_source,
                wall_seconds=time.perf_counter() - start,
            )
        return Evaluation(
            **common,
            status=Status.OK,
            val_accuracy=val,
            curve=[CurvePoint(epoch=self.task.fidelity, val_accuracy=val)],
            source=f"{self.task.signal_table.name}: {self.task.signal_column}-val",
            wall_seconds=time.perf_counter() - start,
        )

    def random_sample_average(self) -> float:
        """Expected final-report accuracy of a uniformly random cell (the baseline of benchmarks)."""
        values = list(self._test_final.values())
        return sum(values) / len(values)


class TabularPool(EvaluationPool):
    """Evaluates in-process at submit time; results come out in submission order. The benchmark is
    the NAS-Bench-201 tables (TabularBenchmark) or a declared space's tables (evaluator.pools.lookup)."""

    background = False  # a result exists as soon as its job is submitted

    def __init__(self, benchmark: TabularBenchmark | Lookup, capacity: int = 1) -> None:
        self.benchmark = benchmark
        self.capacity = capacity
        self._done: deque[PoolEvent] = deque()
        self._results: dict[str, Evaluation] = {}

    def submit(self, job: Job) -> None:
        try:
            evaluation = self.benchmark.evaluate(job)
        except ArchAgentError:
            raise
        except Exception as exc:  # an evaluation failure is a status, not a crash
            evaluation = Evaluation(
                candidate_id=job.candidate_id, purpose=job.purpose, status=Status.FAILED,
                error=f"{type(exc).__name__}: {exc}",
            )
        self._results[job.candidate_id] = evaluation
        self._done.append(PoolEvent(kind="finished", candidate_id=job.candidate_id, evaluation=evaluation))

    def events(self, timeout: float | None = None) -> list[PoolEvent]:
        out = list(self._done)
        self._done.clear()
        return out

    def result(self, candidate_id: str) -> Evaluation | None:
        return self._results.get(candidate_id)

    def cancel(self, candidate_id: str, *, status: Status = Status.PRUNED, reason: str | None = None) -> bool:
        return False  # lookups finish at submit time: there is never anything to cancel

    @property
    def in_flight(self) -> int:
        return len(self._done)
