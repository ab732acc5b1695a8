"""A history of N candidates for the benchmarks: runs of 1,000 candidates with one search
evaluation each (a curve of 12 epochs, params and latency measurements), built through the
History API as a search writes it; and ``timed``, the median time of a call."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

from rich.progress import track

from agent.records import Run, RunStatus
from agent.store import History
from evaluator.records import Candidate, CurvePoint, Evaluation, Status

PER_RUN = 1000
SPEC = {f"edge_{i}": "nor_conv_3x3" for i in range(6)}


def build(home: Path, n: int) -> History:
    """The history of ``n`` candidates in ``home``; one already there with ``n`` fixture
    candidates (an earlier build, kept with --home) is used as it is."""
    h = History(home)
    if h.path.is_file() and len(h.list_runs()) >= (n + PER_RUN - 1) // PER_RUN:
        return h
    for start in track(range(0, n, PER_RUN), description=f"{n:,} candidates", transient=True):
        run_id = f"20260101-000000-{start // PER_RUN:06x}"
        h.create_run(Run(run_id=run_id, task="nb201-cifar10", space="nb201", proposer="random", seed=0, budget=PER_RUN))
        ids = [f"{run_id}-c{i:04d}" for i in range(min(PER_RUN, n - start))]
        h.add_candidates([Candidate(candidate_id=cid, run_id=run_id, seq=i, space="nb201", spec=SPEC,
                                    canonical_key=f"{start + i}", proposer="random", status=Status.RUNNING,
                                    measurements={"params": 1000 + i, "latency_ms": 1.0 + i / 1000})
                          for i, cid in enumerate(ids)])
        h.add_evaluations(run_id, [Evaluation(
            candidate_id=cid, status=Status.OK if i % 10 else Status.FAILED, fidelity=12.0,
            val_accuracy=0.5 + (i % 100) / 1000 if i % 10 else None, error=None if i % 10 else "NaN loss",
            metrics={"params": 1000 + i},
            curve=[CurvePoint(epoch=float(e), val_accuracy=0.3 + e / 40) for e in range(1, 13)])
            for i, cid in enumerate(ids)])
        h.finish_run(run_id, RunStatus.DONE, None)
    return h


def timed(fn: Callable[[], object], repeat: int) -> float:
    """Median seconds of ``repeat`` calls of ``fn``."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
