"""The default proposer against evolution on real training: the 8x8 digits, layers space.

What it measures
    For each proposer (default: `agent search` with no proposer flag, the surrogate-guided
    portfolio; evolution) and seed, `agent search --task digits --budget 12 --seed S
    --final-seeds 1 --json` as a user runs it (a fresh process and AGENT_HOME). Per search: the
    best validation accuracy, the training seconds of its 12 search evaluations (their
    `device_seconds`, summed: the seconds spent training, as `--max-device-seconds` counts them),
    the workers' wall seconds (training plus each worker's start, data loading and evaluation),
    how many candidates failed, timed out or came back without an accuracy (NaN), and the wall
    time. Target (issue 23): the default's mean best validation accuracy at
    least evolution's, in at most half of evolution's training seconds, with fewer failed or NaN
    candidates. The default includes successive halving (`--early-stop auto`); evolution trains
    every candidate to the end.

How to run (from the repository root; about 2 to 5 minutes a search on 2 cores)
    python bench/digits_proposers.py                      # seeds 0..4, updates docs/benchmarks.md
    python bench/digits_proposers.py --seeds 0 --no-write
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from agent.store import History

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _doc import cli_search, run_info, stderr_progress, write_doc  # noqa: E402

BUDGET = 12
PROPOSERS = {"default": (), "evolution": ("--proposer", "evolution")}
BAD = ("failed", "timeout")


def one(proposer: str, seed: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="archagent-digits-") as home:
        summary, wall = cli_search(Path(home), "--task", "digits", "--budget", str(BUDGET), "--seed", str(seed),
                                   "--final-seeds", "1", *PROPOSERS[proposer], timeout=7200)
        h = History(Path(home))
        seconds, worker, bad = 0.0, 0.0, 0
        for c in h.run_candidates(summary["run_id"]):
            evals = [e for e in h.get_candidate(c["candidate_id"])["evaluations"] if e["purpose"] == "search"]
            seconds += sum(e["device_seconds"] for e in evals)
            worker += sum(e["wall_seconds"] for e in evals)
            bad += c["status"] in BAD or any(e["status"] == "ok" and e["val_accuracy"] is None for e in evals)
    return {"proposer": proposer, "seed": seed, "best_val": summary["best"]["val_accuracy"] if summary["best"] else None,
            "train_seconds": seconds, "worker_seconds": worker, "bad": bad, "wall": wall}


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    results = []
    with stderr_progress(len(PROPOSERS) * len(args.seeds), "searches") as advance:
        for seed in args.seeds:
            for proposer in PROPOSERS:
                r = one(proposer, seed)
                results.append(r)
                advance(f"{proposer} seed {seed}: best val {r['best_val']}, {r['train_seconds']:.0f} s training, "
                        f"{r['bad']} failed/NaN, {r['wall']:.0f} s")
    lines = ["| proposer | best val (mean +- std) | training s (mean) | worker s (mean) | failed or NaN (total) | "
             "search wall s (mean) |", "|:---|---:|---:|---:|---:|---:|"]
    for proposer in PROPOSERS:
        rows = [r for r in results if r["proposer"] == proposer]
        vals = [r["best_val"] or 0.0 for r in rows]
        sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
        lines.append(f"| {proposer} | {statistics.fmean(vals):.4f} +- {sd:.4f} | "
                     f"{statistics.fmean(r['train_seconds'] for r in rows):.1f} | "
                     f"{statistics.fmean(r['worker_seconds'] for r in rows):.0f} | {sum(r['bad'] for r in rows)} | "
                     f"{statistics.fmean(r['wall'] for r in rows):.0f} |")
    per_seed = ["", "| seed | " + " | ".join(f"{p} best val / training s / failed" for p in PROPOSERS) + " |",
                "|---:|" + "---:|" * len(PROPOSERS)]
    for seed in args.seeds:
        cells = [next(r for r in results if r["proposer"] == p and r["seed"] == seed) for p in PROPOSERS]
        per_seed.append(f"| {seed} | " + " | ".join(f"{c['best_val']:.4f} / {c['train_seconds']:.1f} / {c['bad']}"
                                                   for c in cells) + " |")
    print("\n".join(lines + per_seed))
    if not args.no_write:
        info = run_info(Path("."), started)
        write_doc("digits_proposers", "\n".join([
            "## Digits: the default proposer against evolution (real training)",
            "",
            f"Written by `bench/digits_proposers.py`: `agent search --task digits --budget {BUDGET} --seed S "
            "--final-seeds 1 --json` per seed, in a fresh process and AGENT_HOME, with no proposer flag (the "
            "surrogate-guided portfolio, with successive halving: `--early-stop auto`) and with `--proposer "
            "evolution` (no early stopping). Training seconds: the search evaluations' `device_seconds`, summed (the "
            "seconds spent training, as `--max-device-seconds` counts them); worker seconds: their workers' wall "
            "seconds, summed (training plus each worker's start, about 2.8 s on 2 cores, data loading and "
            "evaluation); failed or NaN: candidates that failed, timed out or came back without an accuracy "
            "(pruned ones are not failures).",
            "",
            *lines, *per_seed,
            "",
            *info.bullets(),
            f"- seeds: {' '.join(map(str, args.seeds))}; wall time: {info.wall_seconds} s",
        ]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
