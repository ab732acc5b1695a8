"""How long `agent search` takes on the tabular NAS-Bench-201 task, and where the time goes.

What it measures
    The issue's acceptance command,
        agent search --task nb201-cifar10 --benchmark-dir DIR --proposer evolution --budget 100 --seed 0 --json
    run as a user runs it (a fresh process, a fresh AGENT_HOME each repeat), timed from the
    outside: wall seconds, median / min / max over repeats. Beside it: the same search in
    process with the history in memory (what the graph, proposer and lookups cost without
    DuckDB), and two such CLI searches started together on one home (the shared-history
    contract: every write is its own short transaction). Target: under 30 s on 2 cores.

How to run (from the repository root; about a minute)
    python bench/search_speed.py                 # 3 repeats, updates docs/benchmarks.md
    python bench/search_speed.py --repeats 5 --no-write

Results (AMD EPYC, 2 cores): see docs/benchmarks.md, section search_speed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agent.commands.options import positive_int
from agent.config import Settings
from agent.engine.runner import run_search
from agent.store.recorder import MemoryRecorder
from evaluator.tables.nb201 import SIGNAL_TABLE_NAME

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _doc import DEFAULT_BENCHMARK_DIR, DOC, REPO_ROOT, run_info, write_doc  # noqa: E402

BUDGET = 100


def cli_search(benchmark_dir: Path, home: Path, seed: int = 0) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_")} | {"AGENT_HOME": str(home)}
    cmd = [sys.executable, "-m", "agent", "search", "--task", "nb201-cifar10", "--benchmark-dir", str(benchmark_dir),
           "--proposer", "evolution", "--budget", str(BUDGET), "--seed", str(seed), "--json"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO_ROOT)


def finish(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"search_speed: agent search failed (exit {proc.returncode}):\n{err[-2000:]}")
    summary = json.loads(out)
    assert summary["evaluations"] == BUDGET, summary
    return summary


def time_cli(benchmark_dir: Path, repeats: int) -> tuple[list[float], float]:
    walls, test_acc = [], 0.0
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as home:
            t = time.perf_counter()
            summary = finish(cli_search(benchmark_dir, Path(home)))
            walls.append(time.perf_counter() - t)
            test_acc = summary["best"]["test_accuracy"]
    return walls, test_acc


def time_in_memory(benchmark_dir: Path, repeats: int) -> list[float]:
    settings = Settings(task="nb201-cifar10", benchmark_dir=benchmark_dir, proposer="evolution", budget=BUDGET, seed=0)
    run_search(settings, recorder=MemoryRecorder())  # load the tables once, as the CLI process does
    walls = []
    for _ in range(repeats):
        t = time.perf_counter()
        run_search(settings, recorder=MemoryRecorder())
        walls.append(time.perf_counter() - t)
    return walls


def time_two_at_once(benchmark_dir: Path) -> float:
    with tempfile.TemporaryDirectory() as home:
        t = time.perf_counter()
        procs = [cli_search(benchmark_dir, Path(home), seed) for seed in (0, 1)]
        for p in procs:
            finish(p)
        return time.perf_counter() - t


def stats(walls: list[float]) -> str:
    return f"{statistics.median(walls):.2f} | {min(walls):.2f} | {max(walls):.2f}"


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--benchmark-dir", type=Path, default=DEFAULT_BENCHMARK_DIR)
    parser.add_argument("--repeats", type=positive_int, default=3)
    parser.add_argument("--no-write", action="store_true", help=f"do not update {DOC.relative_to(REPO_ROOT)}")
    args = parser.parse_args(argv)
    benchmark_dir = args.benchmark_dir.expanduser().resolve()
    if not (benchmark_dir / SIGNAL_TABLE_NAME).is_file():
        print(f"search_speed: no NAS-Bench-201 tables: looked for {benchmark_dir / SIGNAL_TABLE_NAME}; "
              "pass --benchmark-dir", file=sys.stderr)
        return 2

    print(f"timing {args.repeats} CLI searches ...", file=sys.stderr)
    cli, test_acc = time_cli(benchmark_dir, args.repeats)
    print("timing in-memory searches ...", file=sys.stderr)
    memory = time_in_memory(benchmark_dir, args.repeats)
    print("timing two CLI searches on one home ...", file=sys.stderr)
    both = time_two_at_once(benchmark_dir)

    rows = [
        ("`agent search` (fresh process, DuckDB history)", stats(cli), f"{1000 * statistics.median(cli) / BUDGET:.0f}"),
        ("same search in process, history in memory", stats(memory), f"{1000 * statistics.median(memory) / BUDGET:.1f}"),
        ("two `agent search` at once on one home (both done)", f"{both:.2f} | | ", f"{1000 * both / (2 * BUDGET):.0f}"),
    ]
    table = ["| what | median s | min s | max s | ms per evaluation |", "|:---|---:|---:|---:|---:|"]
    table += [f"| {name} | {s} | {per} |" for name, s, per in rows]
    print("\n".join(table))
    info = run_info(benchmark_dir, started)
    if not args.no_write:
        body = "\n".join([
            "## Search speed: the acceptance command",
            "",
            "Written by `bench/search_speed.py`: `agent search --task nb201-cifar10 --benchmark-dir DIR --proposer "
            f"evolution --budget {BUDGET} --seed 0 --json`, timed from outside over {args.repeats} repeats with a fresh "
            "AGENT_HOME each (process start, imports, table loading, 100 evaluations, the final report). Target: under "
            f"30 s. The chosen cell's 200-epoch test accuracy was {100 * test_acc:.2f}.",
            "",
            *table,
            "",
            *info.bullets(),
        ])
        write_doc("search_speed", body)
        print(f"updated {DOC.relative_to(REPO_ROOT)} (section search_speed)", file=sys.stderr)
    print(f"agent search budget {BUDGET}: median {statistics.median(cli):.2f} s (target < 30 s); "
          f"in memory {statistics.median(memory):.2f} s; two at once {both:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
