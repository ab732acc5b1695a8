"""Early stopping and successive halving inside the real search loop, on recorded learning curves.

What it measures
    `agent search --task curves:FILE --proposer random --budget B --seed S --early-stop MODE`
    (the same graph, pool interface, forecaster and scheduler as a training search; the curves
    pool replays each cell's recorded per-epoch accuracies) for MODE in off, forecast, asha,
    both, and seeds 0..N-1. The random proposer ignores results, so every mode sees the same
    candidates in the same order and only the stopping differs. Per mode, over the seeds: the
    share of epochs saved and the saving factor (epochs of `off` / epochs of the mode), and the
    regret: the final validation accuracy of the best candidate of the seed (what `off` chooses)
    minus the final validation accuracy of the candidate the mode chooses, in points (the chosen
    one always trained to the end). Also for several workers (the order candidates finish in
    changes what successive halving promotes).

How to run (from the repository root; about 20 minutes on 2 cores, most of it forecasting)
    python bench/early_stop_curves.py                        # 10 seeds, budget 50; updates docs/benchmarks.md
    python bench/early_stop_curves.py --curves my_curves.csv --seeds 5 --no-write

Results: docs/benchmarks.md, section early_stop_curves.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from agent.config import Settings
from agent.engine.runner import run_search
from agent.store.recorder import MemoryRecorder
from evaluator.tables.curves import load_curve_table
from evaluator.errors import ArchAgentError
from evaluator.early_stop.halving import default_rungs

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _doc import DOC, REPO_ROOT, run_info, stderr_progress, publish  # noqa: E402

DEFAULT_CURVES = REPO_ROOT.parent / "shared" / "benchdata" / "curves" / "nb201_cifar10valid_200archs_curves.csv"
# (label, settings): the four modes; successive halving with a gentler eta, one more (earlier) rung, fewer rungs
MODES = {"off": {"early_stop": "off"}, "forecast": {"early_stop": "forecast"}, "asha": {"early_stop": "asha"},
         "both": {"early_stop": "both"}, "asha, eta 2": {"early_stop": "asha", "reduction_factor": 2},
         "asha, rungs 2,7,22,67": {"early_stop": "asha", "rungs": [2, 7, 22, 67]},
         "asha, rungs 22,67": {"early_stop": "asha", "rungs": [22, 67]}}


def search(curves: Path, mode: str, seed: int, budget: int, workers: int, home: Path) -> dict:
    settings = Settings(home=home, task=f"curves:{curves}", proposer="random", budget=budget, seed=seed,
                        workers=workers, **MODES[mode])
    recorder = MemoryRecorder()
    summary = run_search(settings, recorder=recorder)
    finals = {e.candidate_id: e for e in recorder.evaluations if e.purpose.value == "search"}
    return {"epochs": summary.epochs_trained, "saved": summary.epochs_saved, "chosen": summary.best.val_accuracy,
            "candidates": {c.canonical_key for c in recorder.candidates.values() if c.canonical_key},
            "stopped": summary.counts["stopped_early"] + summary.counts["pruned"], "evaluations": len(finals)}


def reading(rows: list[tuple]) -> str:
    """The table in words, per worker count: which mode saves most at what regret."""
    out = []
    for workers in sorted({r[0] for r in rows}):
        by = {r[1]: r for r in rows if r[0] == workers}
        f, a, b = by["forecast"], by["asha"], by["both"]
        text = (f"with {workers} worker(s), successive halving saves {a[3]:.1f}x at {a[4]:.3f} points of mean regret "
                f"({a[5]:.3f} worst), the forecast rule {f[3]:.1f}x at {f[4]:.3f} ({f[5]:.3f} worst)")
        if abs(b[3] - a[3]) < 1e-9:
            text += ("; both equals asha: so few candidates reach the end of the schedule that the forecaster, which "
                     "stops nothing before 3 curves have finished, never acts")
        else:
            text += f"; both {b[3]:.1f}x at {b[4]:.3f}"
        variants = [m for m in by if m.startswith("asha,")]
        if variants:
            text += "; other successive-halving settings: " + ", ".join(
                f"{m} {by[m][3]:.1f}x at {by[m][4]:.3f} ({by[m][5]:.3f} worst)" for m in variants)
        out.append(text)
    return "; ".join(out) + (". Regret is measured against the best final value among the same candidates; the "
                             "chosen candidate always trained to the end, so its value is its real final accuracy.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--curves", type=Path, default=DEFAULT_CURVES)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--budget", type=int, default=50)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--no-write", action="store_true", help=f"print only; leave {DOC.name} alone")
    args = parser.parse_args()
    started = time.perf_counter()
    try:
        table = load_curve_table(args.curves)
    except ArchAgentError as exc:
        raise SystemExit(f"early_stop_curves: {exc}") from None
    best_final = {arch: values[-1] for arch, values in table.val.items()}
    modes = [m for m in MODES if "rungs" not in MODES[m] or max(MODES[m]["rungs"]) < table.epochs]

    rows = []
    with stderr_progress(len(args.workers) * len(modes) * args.seeds, "searches") as advance, \
            __import__("tempfile").TemporaryDirectory(prefix="bench-curves-") as tmp:
        for workers in args.workers:
            results = {m: [] for m in modes}
            for seed in range(args.seeds):
                for mode in modes:
                    results[mode].append(search(args.curves, mode, seed, args.budget, workers, Path(tmp)))
                    advance(f"{workers} worker(s), seed {seed}, {mode}", line=False)
            off = results["off"]
            for mode in modes:
                rs = results[mode]
                regrets = [100 * (max(best_final[a] for a in o["candidates"]) - r["chosen"]) for r, o in zip(rs, off)]
                epochs = sum(r["epochs"] for r in rs)
                rows.append((workers, mode, 100 * sum(r["saved"] for r in rs) / (epochs + sum(r["saved"] for r in rs)),
                             sum(o["epochs"] for o in off) / epochs, statistics.fmean(regrets), max(regrets),
                             statistics.fmean(r["stopped"] for r in rs)))
    lines = ["| workers | early stop | epochs saved | saving | regret mean (pts) | regret worst (pts) | stopped or pruned / search |",
             "|---:|:---|---:|---:|---:|---:|---:|"]
    lines += [f"| {w} | {m} | {saved:.1f}% | {saving:.2f}x | {mean:.3f} | {worst:.3f} | {stopped:.1f} |"
              for w, m, saved, saving, mean, worst, stopped in rows]
    info = run_info(REPO_ROOT, started)
    body = "\n".join([
        "## Early stopping and successive halving in the search loop, on recorded curves", "",
        f"Written by `bench/early_stop_curves.py`: `agent search --task curves:{args.curves.name} --proposer random "
        f"--budget {args.budget} --seed S --early-stop MODE --workers W` for seeds 0..{args.seeds - 1}, recorded in "
        f"memory. {len(table.archs)} NAS-Bench-201 cells with {table.epochs}-epoch validation and training curves "
        "(cifar10-valid), replayed epoch by epoch; the random proposer makes every mode see the same candidates. "
        "forecast: P(beat the incumbent) < 0.05 from epoch 5, 10% audits; asha: rungs at "
        f"{', '.join(str(e) for e in default_rungs(table.epochs, 3))} "
        "epochs, eta 3; both: the two together; 'asha, eta 2' promotes the top half; 'asha, rungs ...' compares "
        "candidates at those epochs instead. Saving = epochs of off / epochs of the mode; regret = best final "
        "validation accuracy among the seed's candidates minus that of the chosen candidate, in points.", "",
        *lines, "",
        "Reading: " + reading(rows), "",
        *[b for b in info.bullets() if not b.startswith("- tables")], f"- curves: `{args.curves}`",
        f"- wall time of the script: {info.wall_seconds} s",
    ])
    publish("early_stop_curves", body, write=not args.no_write)


if __name__ == "__main__":
    main()
