"""What a snapshot of the history costs: the time to take one and to restore one, by history size.

Builds histories of N candidates (one search evaluation each, spread over runs of 1,000) with
the History API, then times ``take_snapshot`` (copy under the shared lock, then one read of every
table of the copy) and ``restore_snapshot``, each the median of --repeat tries.

    python bench/snapshots.py --sizes 1000 10000 100000
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.progress import track
from rich.table import Table

from agent.records import Run
from agent.store import History
from agent.store.snapshots import restore_snapshot, take_snapshot
from evaluator.records import Candidate, Evaluation, Status

PER_RUN = 1000
SPEC = {f"edge_{i}": "nor_conv_3x3" for i in range(6)}


def build(home: Path, n: int) -> History:
    h = History(home)
    for start in track(range(0, n, PER_RUN), description=f"{n:,} candidates", transient=True):
        run_id = f"20260101-000000-{start // PER_RUN:06x}"
        h.create_run(Run(run_id=run_id, task="nb201-cifar10", space="nb201", proposer="random", seed=0, budget=PER_RUN))
        ids = [f"{run_id}-c{i:04d}" for i in range(min(PER_RUN, n - start))]
        h.add_candidates([Candidate(candidate_id=cid, run_id=run_id, seq=i, space="nb201", spec=SPEC,
                                    canonical_key=f"{start + i}", proposer="random", status=Status.RUNNING)
                          for i, cid in enumerate(ids)])
        h.add_evaluations(run_id, [Evaluation(candidate_id=cid, status=Status.OK, fidelity=12.0,
                                              val_accuracy=0.5 + (i % 100) / 1000, metrics={"params": 1000 + i})
                                   for i, cid in enumerate(ids)])
    return h


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    table = Table(title="history snapshots (median of %d)" % args.repeat, title_justify="left")
    for col in ("candidates", "file MB", "take s", "restore s"):
        table.add_column(col, justify="right")
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            h = build(Path(tmp) / "home", n)
            size = h.path.stat().st_size / 1e6
            take = timed(lambda: take_snapshot(h, "bench", keep=2), args.repeat)
            restore = timed(lambda: restore_snapshot(h), args.repeat)
            table.add_row(f"{n:,}", f"{size:.1f}", f"{take:.3f}", f"{restore:.3f}")
    Console().print(table)


if __name__ == "__main__":
    main()
