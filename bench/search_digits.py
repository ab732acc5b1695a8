"""How long the digits acceptance search takes, how good its answer is, and where the time goes.

What it measures
    The issue's acceptance command,
        agent search --task digits --proposer evolution --budget 12 --seed S --json
    run as a user runs it (a fresh process and a fresh AGENT_HOME per seed), timed from the
    outside. For each seed: wall seconds (target: under 300 s on 2 CPU cores), evaluations,
    the best validation accuracy (target: >= 0.90), the 3-seed test accuracy of the chosen
    candidate (mean +- std) and its parameter count. Then, over every training job of all
    seeds (the 12 search evaluations and the 3 final retrainings): worker wall seconds, of
    which training (the epochs) and overhead (process start, imports, model build, prediction
    on the validation split, messages), and training throughput in images per second.

How to run (from the repository root; about 2.5 minutes a seed on 2 cores)
    python bench/search_digits.py                       # seeds 0 1 2, updates docs/benchmarks.md
    python bench/search_digits.py --seeds 0 --no-write
    python bench/search_digits.py --device cuda --workers 4

Results: docs/benchmarks.md, section search_digits.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from agent.store import History

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _doc import DOC, REPO_ROOT, cli_search, run_info, write_doc  # noqa: E402

BUDGET = 12


def search(home: Path, seed: int, device: str, workers: int) -> tuple[dict, float]:
    return cli_search(home, "--task", "digits", "--proposer", "evolution", "--budget", str(BUDGET), "--seed", str(seed),
                      "--device", device, "--workers", str(workers), timeout=3600)


def jobs_of(home: Path, run_id: str) -> list[dict]:
    h = History(home)
    return [e for c in h.run_candidates(run_id) for e in h.get_candidate(c["candidate_id"])["evaluations"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--no-write", action="store_true", help=f"print only; leave {DOC.name} alone")
    args = parser.parse_args()
    started = time.perf_counter()

    rows, jobs = [], []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory(prefix="bench-digits-") as tmp:
            summary, wall = search(Path(tmp), seed, args.device, args.workers)
            jobs += jobs_of(Path(tmp), summary["run_id"])
        best = summary["best"]
        rows.append({"seed": seed, "wall": wall, "evaluations": summary["evaluations"], "ok": summary["counts"]["ok"],
                     "val": best["val_accuracy"], "test": best["test_accuracy"], "std": best["test_accuracy_std"],
                     "params": best.get("params")})
        print(f"seed {seed}: {wall:.1f} s, best val {best['val_accuracy']:.4f}, "
              f"test {best['test_accuracy']:.4f} +- {best['test_accuracy_std']:.4f}", file=sys.stderr)

    table = ["| seed | wall s | evaluations (ok) | best val acc (%) | test acc, 3 seeds (%) | params of best |",
             "|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        table.append(f"| {r['seed']} | {r['wall']:.1f} | {r['evaluations']} ({r['ok']}) | {100 * r['val']:.2f} | "
                     f"{100 * r['test']:.2f} +- {100 * r['std']:.2f} | {r['params']:,} |")
    ok = [j for j in jobs if j["status"] == "ok"]
    walls = [j["wall_seconds"] for j in ok]
    train = [j["device_seconds"] for j in ok]
    overhead = [w - t for w, t in zip(walls, train)]
    ips = [j["metrics"]["images_per_second"] for j in ok]
    per_job = ["| per training job (n = %d) | median | min | max |" % len(ok), "|:---|---:|---:|---:|"]
    for name, values, fmt in (("worker wall s", walls, "{:.2f}"), ("of which training s", train, "{:.2f}"),
                              ("of which overhead s", overhead, "{:.2f}"), ("training images/s", ips, "{:,.0f}")):
        per_job.append(f"| {name} | {fmt.format(statistics.median(values))} | {fmt.format(min(values))} | "
                       f"{fmt.format(max(values))} |")

    info = run_info(REPO_ROOT, started)
    if args.device == "cuda":
        import torch

        info = replace(info, machine=f"{torch.cuda.get_device_name()} (torch {torch.__version__}); {info.machine}")
    where = f"{args.device}, {args.workers} worker{'s' if args.workers > 1 else ''}"
    body = "\n".join([
        f"## Digits search: the acceptance command ({where})", "",
        f"Written by `bench/search_digits.py`: `agent search --task digits --proposer evolution --budget {BUDGET} "
        f"--seed S --device {args.device} --workers {args.workers} --json`, timed from outside with a fresh "
        "AGENT_HOME per seed (process start, data loading, 12 trainings of 15 epochs in fresh worker processes, "
        "and the final retraining of the best with 3 seeds). Targets: under 300 s on 2 CPU cores, best "
        "validation accuracy >= 90%. Validation and test splits are 360 and 359 images.", "",
        *table, "", *per_job, "",
        *[b for b in info.bullets() if not b.startswith("- tables")], f"- wall time of the script: {info.wall_seconds} s",
    ])
    print(body)
    if not args.no_write:
        write_doc(f"search_digits:{args.device}:w{args.workers}", body)
        print(f"\nwrote section search_digits:{args.device}:w{args.workers} of {DOC}", file=sys.stderr)


if __name__ == "__main__":
    main()
