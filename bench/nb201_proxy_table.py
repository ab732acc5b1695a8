"""Zero-cost proxy scores of every NAS-Bench-201 cell, as a search's model probe computes them.

What it does
    For every cell of nb201_12epoch_accuracy.csv (15,625), it asks the project's model probe
    (evaluator.measure.probe.ModelProbe, one thread, the same process a search starts) for the
    cell's parameter count, multiply-accumulates and the chosen zero-cost proxies (default:
    synflow), on the task's input shape and classes, with the probe's seeded synthetic batch
    (tabular tasks have no training images). The scores are deterministic (seeded init and
    batch), so bench/search_nb201.py reads this table instead of rebuilding each cell in every
    one of its hundreds of searches; each row keeps the seconds the probe took for that cell,
    and a search that scores a cell reports those seconds as its proxy compute.

    Rows are appended as they are measured: an interrupted run continues where it stopped.

How to run (from the repository root; synflow: about 0.08 s a cell, 22 min for all cells on one core)
    python bench/nb201_proxy_table.py                         # nb201-cifar10 -> runs/bench-cache/
    python bench/nb201_proxy_table.py --task nb201-cifar100 --workers 2
    python bench/nb201_proxy_table.py --limit 100 --out /tmp/p.csv
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing
import sys
import time
from pathlib import Path

from agent.commands.options import positive_int
from evaluator.measure import PROXY_NAMES
from evaluator.measure.probe import ModelProbe
from evaluator.spaces.nb201 import parse_arch
from evaluator.tables.nb201 import SIGNAL_TABLE_NAME
from evaluator.tasks import TASK_NAMES

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _doc import DEFAULT_BENCHMARK_DIR, REPO_ROOT, stderr_progress  # noqa: E402

CACHE_DIR = REPO_ROOT / "runs" / "bench-cache"
SHAPES = {"nb201-cifar10": ((3, 32, 32), 10), "nb201-cifar100": ((3, 32, 32), 100),
          "nb201-imagenet16": ((3, 16, 16), 120)}


def default_path(task: str, proxies: tuple[str, ...]) -> Path:
    return CACHE_DIR / f"{task}_proxies_{'+'.join(proxies)}.csv"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--task", choices=[t for t in TASK_NAMES if t in SHAPES], default="nb201-cifar10")
    parser.add_argument("--benchmark-dir", type=Path, default=DEFAULT_BENCHMARK_DIR)
    parser.add_argument("--proxies", nargs="+", choices=PROXY_NAMES, default=["synflow"])
    parser.add_argument("--workers", type=positive_int, default=1, help="probe processes (default 1)")
    parser.add_argument("--limit", type=positive_int, default=None, help="only the first N cells")
    parser.add_argument("--out", type=Path, default=None, help="default: runs/bench-cache/<task>_proxies_<names>.csv")
    return parser.parse_args(argv)


def _measure(job: tuple[str, tuple[str, ...], list[str]]) -> list[dict]:
    task, proxies, archs = job
    shape, classes = SHAPES[task]
    rows = []
    with ModelProbe(threads=1, proxies=proxies) as probe:
        for arch in archs:
            m = probe.measure("nb201", parse_arch(arch), shape, classes, latency=False, proxies=True)
            row = {"arch": arch, "params": m.params, "flops": m.flops, "seconds": round(m.seconds, 4)}
            row |= {name: m.proxies.get(name, "") for name in proxies}
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    table = args.benchmark_dir / SIGNAL_TABLE_NAME
    if not table.is_file():
        print(f"error: no NAS-Bench-201 table at {table}; pass --benchmark-dir DIR", file=sys.stderr)
        return 2
    with table.open() as f:
        archs = [row["arch"] for row in csv.DictReader(f)][: args.limit]
    proxies = tuple(args.proxies)
    out = args.out or default_path(args.task, proxies)
    out.parent.mkdir(parents=True, exist_ok=True)
    fields = ["arch", "params", "flops", "seconds", *proxies]
    done: set[str] = set()
    if out.exists():
        with out.open() as f:
            done = {row["arch"] for row in csv.DictReader(f)}
    todo = [a for a in archs if a not in done]
    chunks = [(args.task, proxies, todo[i:i + 50]) for i in range(0, len(todo), 50)]
    started = time.monotonic()
    new = not out.exists() or out.stat().st_size == 0
    with (out.open("a", newline="") as f, multiprocessing.Pool(args.workers) as pool,
          stderr_progress(len(chunks), "cells") as advance):
        writer = csv.DictWriter(f, fieldnames=fields)
        if new:
            writer.writeheader()
        count = 0
        for rows in pool.imap(_measure, chunks):
            writer.writerows(rows)
            f.flush()
            count += len(rows)
            advance(f"{count}/{len(todo)} cells, {time.monotonic() - started:.0f} s", line=count % 1000 < 50)
    print(f"{len(todo)} cells measured in {time.monotonic() - started:.0f} s; {len(done) + len(todo)} in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
