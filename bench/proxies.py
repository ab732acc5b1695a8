"""Zero-cost proxies on NAS-Bench-201: do our scores rank cells as training does, and as the published scores do?

What it measures
    For every cell of a learning-curves file (default: the 200 cells of
    ../shared/benchdata/curves/nb201_cifar10valid_200archs_curves.csv), it builds the
    project's NAS-Bench-201 network (evaluator.models.build_model('nb201', ...): 3x32x32
    input, 10 classes, C=16 channels and N=5 cells per stage, the paper's sizes and the
    builder's defaults), initialised with torch.manual_seed(seed) (PyTorch's default init),
    and scores it with evaluator.measure.proxies.compute_proxies on one fixed-seed synthetic
    CIFAR-shaped batch (standard-normal images and uniformly random labels; there is no
    CIFAR-10 here). Each proxy is timed on its own. Per proxy it reports the Spearman rank
    correlation of our score with the cell's final validation accuracy (the last value of
    `val_accs`, 200 epochs on cifar10-valid) and with the same proxy precomputed in the file
    (Abdelfattah et al.'s code on real CIFAR-10 batches of 64), and the file's own proxy
    against validation accuracy for reference, with the parameter count as a baseline. A
    score that is undefined for a cell (compute_proxies raises: the output does not depend
    on the input) ranks that cell last.

How to run (from the repository root; about 10 minutes for 200 cells on one core)
    python bench/proxies.py                                  # all cells, updates docs/benchmarks.md
    python bench/proxies.py --limit 20 --no-write            # a quick look
    python bench/proxies.py --curves my.csv --channels 8 --cells 2 --batch-size 32 --json /tmp/raw.json
    --curves takes any CSV with the columns arch_str and val_accs (a JSON list of
    percentages); the precomputed proxy columns are compared where present. A missing file
    is reported with the path that was tried (exit 2).

Results (200 cells, batch 64, seed 0, AMD EPYC 2 cores shared with another job, one thread, 554 s;
full table in docs/benchmarks.md)
    Spearman with final validation accuracy / with the file's precomputed proxy
        synflow 0.745 / 0.999, naswot 0.703 / -, jacob_cov 0.640 / 0.839,
        grad_norm 0.632 / 0.984, snip 0.634 / 0.983; parameter count 0.705 / -
    Target synflow vs precomputed >= 0.8: met (0.999). Only synflow beats the parameter count.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from agent.commands.options import positive_int
from evaluator.errors import SpecError
from evaluator.models import build_model
from evaluator.measure.proxies import PROXY_NAMES, ProxyError, compute_proxies, spearman, synthetic_batch
from evaluator.spaces.nb201 import parse_arch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _doc import DOC, REPO_ROOT, RunInfo, run_info, stderr_progress, write_doc  # noqa: E402

DEFAULT_CURVES = REPO_ROOT.parent / "shared" / "benchdata" / "curves" / "nb201_cifar10valid_200archs_curves.csv"
FILE_PROXIES = ("grad_norm", "snip", "grasp", "fisher", "jacob_cov", "plain", "synflow_bn", "synflow")  # the file's columns
REQUIRED_COLUMNS = ("arch_str", "val_accs")
INPUT_SHAPE = (3, 32, 32)  # CIFAR-10
NUM_CLASSES = 10
TARGET = ("synflow", 0.8)  # our synflow against the file's: Spearman at least this


#############################################
#                Arguments                  #
#############################################

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--curves", type=Path, default=DEFAULT_CURVES,
                        help="learning-curves CSV (default: ../shared/benchdata/curves/"
                             "nb201_cifar10valid_200archs_curves.csv next to the repository)")
    parser.add_argument("--limit", type=positive_int, help="score only the first N cells of the file")
    parser.add_argument("--proxies", nargs="+", choices=PROXY_NAMES, default=list(PROXY_NAMES),
                        help="default: all of " + " ".join(PROXY_NAMES))
    parser.add_argument("--batch-size", type=positive_int, default=64, help="synthetic batch size (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the batch, the weights and the proxies (default 0)")
    parser.add_argument("--channels", type=positive_int, default=16, help="C of the NB201 network (default 16)")
    parser.add_argument("--cells", type=positive_int, default=5, help="N cells per stage (default 5)")
    parser.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the per-cell scores here")
    parser.add_argument("--no-write", action="store_true", help=f"do not update {DOC.relative_to(REPO_ROOT)}")
    args = parser.parse_args(argv)
    if args.batch_size < 2:
        parser.error("--batch-size must be at least 2 (naswot and jacob_cov compare the inputs of the batch)")
    args.proxies = list(dict.fromkeys(args.proxies))
    return args


#############################################
#                  Data                     #
#############################################

@dataclass(frozen=True)
class Cell:
    index: int  # arch_i, or the row number when the file has no arch_i column
    arch: str
    spec: dict
    val_accuracy: float  # percent, last epoch of val_accs
    file_scores: dict[str, float]  # the file's precomputed proxies (NaN when not finite)


class CurvesError(Exception):
    """A curves file this script cannot read; the message names the file and the fix."""


def load_curves(path: Path, limit: int | None) -> tuple[list[Cell], list[str]]:
    """The cells of a curves CSV and the precomputed proxy columns it has."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise CurvesError(f"{path}: missing column(s) {', '.join(missing)}; the file has {', '.join(columns) or 'none'}. "
                              "Pass a curves CSV with arch_str and val_accs (a JSON list of percentages per epoch).")
        present = [c for c in FILE_PROXIES if c in columns]
        cells = []
        for row_number, row in enumerate(reader, start=2):
            if limit is not None and len(cells) >= limit:
                break
            where = f"{path}, line {row_number}"
            try:
                spec = parse_arch(row["arch_str"])
                curve = json.loads(row["val_accs"])
                val = float(curve[-1])
                index = int(row["arch_i"]) if row.get("arch_i") not in (None, "") else row_number - 2
                scores = {c: _finite_or_nan(row[c]) for c in present}
            except SpecError as exc:
                raise CurvesError(f"{where}: {exc}") from exc
            except (ValueError, TypeError, IndexError, KeyError) as exc:
                raise CurvesError(f"{where}: cannot read the row ({type(exc).__name__}: {exc}); val_accs must be a "
                                  "non-empty JSON list of numbers and arch_i an integer") from exc
            cells.append(Cell(index=index, arch=row["arch_str"], spec=spec, val_accuracy=val, file_scores=scores))
    if len(cells) < 3:
        raise CurvesError(f"{path}: {len(cells)} cell(s) read; a rank correlation needs at least 3 "
                          "(raise --limit or pass a larger file)")
    return cells, present


def _finite_or_nan(text: str) -> float:
    value = float(text) if text.strip() else math.nan
    return value if math.isfinite(value) else math.nan


#############################################
#                 Scoring                   #
#############################################

@dataclass
class Scored:
    cell: Cell
    params: int
    scores: dict[str, float] = field(default_factory=dict)  # ours; -inf where undefined
    undefined: dict[str, str] = field(default_factory=dict)  # proxy -> why
    seconds: dict[str, float] = field(default_factory=dict)


def score_cell(cell: Cell, proxies: list[str], inputs: torch.Tensor, targets: torch.Tensor,
               args: argparse.Namespace) -> Scored:
    torch.manual_seed(args.seed)  # the same initial weights stream for every cell
    model = build_model("nb201", cell.spec, INPUT_SHAPE, NUM_CLASSES, channels=args.channels, cells=args.cells)
    scored = Scored(cell=cell, params=sum(p.numel() for p in model.parameters()))
    for name in proxies:  # one call each, so each proxy is timed alone
        started = time.perf_counter()
        try:
            scored.scores[name] = compute_proxies(model, inputs, targets, [name], seed=args.seed)[name]
        except ProxyError as exc:
            scored.scores[name] = -math.inf
            scored.undefined[name] = exc.message
        scored.seconds[name] = time.perf_counter() - started
    return scored


def score_all(cells: list[Cell], args: argparse.Namespace) -> list[Scored]:
    inputs, targets = synthetic_batch(INPUT_SHAPE, NUM_CLASSES, args.batch_size, args.seed)
    results = []
    with stderr_progress(len(cells), "scoring") as advance:
        for k, cell in enumerate(cells, start=1):
            results.append(score_cell(cell, args.proxies, inputs, targets, args))
            advance(f"cell {k}/{len(cells)} (arch {cell.index}): {sum(results[-1].seconds.values()):.1f} s")
    return results


#############################################
#               Correlations                #
#############################################

@dataclass(frozen=True)
class Row:
    """One proxy over all cells; rho values are Spearman rank correlations (None: not measured)."""

    proxy: str
    cells: int
    undefined: int | None  # cells where our score is undefined (ranked last); None: not ours
    ours_vs_val: float | None
    file_vs_val: float | None
    ours_vs_file: float | None
    ms_per_cell: float | None


def correlations(results: list[Scored], proxies: list[str], file_columns: list[str]) -> list[Row]:
    val = [r.cell.val_accuracy for r in results]

    def file_column(name: str) -> list[float] | None:
        if name not in file_columns:
            return None
        return [-math.inf if math.isnan(r.cell.file_scores[name]) else r.cell.file_scores[name] for r in results]

    rows = []
    for name in proxies:
        ours = [r.scores[name] for r in results]
        theirs = file_column(name)
        rows.append(Row(proxy=name, cells=len(results), undefined=sum(name in r.undefined for r in results),
                        ours_vs_val=spearman(ours, val), file_vs_val=spearman(theirs, val) if theirs else None,
                        ours_vs_file=spearman(ours, theirs) if theirs else None,
                        ms_per_cell=1000 * statistics.fmean(r.seconds[name] for r in results)))
    rows.append(Row(proxy="params", cells=len(results), undefined=0,
                    ours_vs_val=spearman([r.params for r in results], val), file_vs_val=None, ours_vs_file=None,
                    ms_per_cell=None))
    rows += [Row(proxy=name, cells=len(results), undefined=None, ours_vs_val=None,
                 file_vs_val=spearman(file_column(name), val), ours_vs_file=None, ms_per_cell=None)
             for name in file_columns if name not in proxies]
    return rows


#############################################
#                 Reports                   #
#############################################

def fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return "n/a" if math.isnan(x) else f"{x:.3f}"


def label(row: Row) -> str:
    if row.proxy == "params":
        return "params (baseline)"
    return row.proxy if row.undefined is not None else f"{row.proxy} (file only)"


HEADERS = ("proxy", "cells", "undefined", "rho ours~val", "rho file~val", "rho ours~file", "ms / cell")


def cells_of(row: Row) -> list[str]:
    return [label(row), str(row.cells), "-" if row.undefined is None else str(row.undefined), fmt(row.ours_vs_val),
            fmt(row.file_vs_val), fmt(row.ours_vs_file), "-" if row.ms_per_cell is None else f"{row.ms_per_cell:.0f}"]


def text_table(rows: list[Row]) -> str:
    fmt_line = "{:<22}  {:>5}  {:>9}  {:>12}  {:>12}  {:>13}  {:>9}"
    lines = [fmt_line.format(*HEADERS), fmt_line.format(*("-" * len(h) for h in HEADERS))]
    lines += [fmt_line.format(*cells_of(r)) for r in rows]
    return "\n".join(lines)


def target_line(rows: list[Row]) -> str:
    name, threshold = TARGET
    row = next((r for r in rows if r.proxy == name and r.ours_vs_file is not None), None)
    if row is None:
        return f"target {name} ours~file >= {threshold}: not measured (no {name} in this run or the file)"
    met = not math.isnan(row.ours_vs_file) and row.ours_vs_file >= threshold
    return f"target {name} ours~file >= {threshold}: {'met' if met else 'NOT met'} ({fmt(row.ours_vs_file)})"


def reading(rows: list[Row], results: list[Scored], args: argparse.Namespace) -> list[str]:
    """A short interpretation, built from the numbers so that it stays true when they change."""
    ours = [r for r in rows if r.undefined is not None and r.proxy != "params" and r.ours_vs_val is not None]
    params = next(r for r in rows if r.proxy == "params")
    lines = [f"- {target_line(rows)}."]
    if ours:
        best = max(ours, key=lambda r: -2 if math.isnan(r.ours_vs_val) else r.ours_vs_val)
        beat = [r.proxy for r in ours if not math.isnan(r.ours_vs_val) and r.ours_vs_val > params.ours_vs_val]
        lines.append(f"- Best predictor of final validation accuracy: {best.proxy} (rho {fmt(best.ours_vs_val)}); "
                     f"the parameter count alone reaches {fmt(params.ours_vs_val)}, and "
                     + (f"{', '.join(beat)} beat{'s' if len(beat) == 1 else ''} it." if beat else "no proxy beats it."))
    data_free = [r for r in ours if r.proxy == "synflow" and r.ours_vs_file is not None]
    data_bound = [r for r in ours if r.proxy != "synflow" and r.ours_vs_file is not None]
    if data_free and data_bound:
        lines.append(f"- synflow reads no data (only the input shape), so ours and the file's differ only in the "
                     f"initial weights and implementation details: ours~file "
                     f"{fmt(data_free[0].ours_vs_file)}. The data-dependent proxies ("
                     + ", ".join(f"{r.proxy} {fmt(r.ours_vs_file)}" for r in data_bound)
                     + ") see a synthetic batch here and real CIFAR-10 there, so their agreement with the file "
                       "also measures how little the proxy depends on the data.")
    undefined = [s for s in results if s.undefined]
    if undefined:
        reasons = sorted({why for s in undefined for why in s.undefined.values()})
        lines.append(f"- {len(undefined)} cell(s) have an undefined score ("
                     + ", ".join(f"{r.proxy}: {r.undefined}" for r in ours if r.undefined)
                     + f"); they rank last. Their final validation accuracy is at most "
                       f"{max(s.cell.val_accuracy for s in undefined):.2f}%. Reasons: " + " / ".join(reasons) + ".")
    n = rows[0].cells
    lines.append(f"- One seed ({args.seed}) and one synthetic batch, on the {n} cells of the curves file out of "
                 f"NAS-Bench-201's 15,625: a rho here has a standard error of up to about 1/sqrt(n-1) = "
                 f"{1 / math.sqrt(n - 1):.2f} (less for strong correlations).")
    return lines


def doc_section(rows: list[Row], results: list[Scored], args: argparse.Namespace, info: RunInfo, curves: Path) -> str:
    lines = [
        "## Zero-cost proxies on NAS-Bench-201",
        "",
        f"Written by `bench/proxies.py`. Each cell of the curves file is built with the project's NAS-Bench-201 "
        f"network (3x32x32 input, 10 classes, C={args.channels}, N={args.cells}, PyTorch default init after "
        f"`torch.manual_seed({args.seed})`) and scored by `evaluator.measure.proxies.compute_proxies` on one synthetic batch "
        f"of {args.batch_size} standard-normal images with uniformly random labels (seed {args.seed}; no CIFAR-10 "
        "here). \"rho\" is the Spearman rank correlation: \"ours~val\" of our score with the final (200-epoch) "
        "cifar10-valid validation accuracy, \"file~val\" of the file's precomputed proxy (Abdelfattah et al.'s code, "
        "real CIFAR-10 batch of 64) with it, \"ours~file\" of our score with the file's. \"undefined\": cells where "
        "our proxy raises (they rank last). \"ms / cell\": mean time of that proxy alone, one thread. "
        "synflow removes BatchNorm and runs in float64; the others run in train mode (BatchNorm on batch "
        "statistics).",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|:---|" + "---:|" * (len(HEADERS) - 1),
    ]
    lines += ["| " + " | ".join(cells_of(r)) + " |" for r in rows]
    lines += ["", "Reading:", *reading(rows, results, args), "", *info.bullets(),
              f"- curves: `{_shown(curves)}` ({rows[0].cells} cells)",
              f"- seed: {args.seed}; batch: {args.batch_size} x 3x32x32; threads: {args.threads}; "
              f"wall time: {info.wall_seconds} s"]
    return "\n".join(lines)


def _shown(path: Path) -> str:
    return os.path.relpath(path, REPO_ROOT)


#############################################
#                   Main                    #
#############################################

def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    curves = args.curves.expanduser().resolve()
    if not curves.is_file():
        print(f"proxies: no curves file at {curves}.\nPass --curves with a CSV that has the columns arch_str and "
              "val_accs (e.g. ../shared/benchdata/curves/nb201_cifar10valid_200archs_curves.csv).", file=sys.stderr)
        return 2
    try:
        cells, file_columns = load_curves(curves, args.limit)
    except CurvesError as exc:
        print(f"proxies: {exc}", file=sys.stderr)
        return 2
    results = score_all(cells, args)
    rows = correlations(results, args.proxies, file_columns)
    info = run_info(curves.parent, started)

    print(f"{len(cells)} NAS-Bench-201 cells from {curves.name}; C={args.channels}, N={args.cells}; synthetic batch "
          f"{args.batch_size}, seed {args.seed}; Spearman rho\n")
    print(text_table(rows))
    print()
    if args.json is not None:
        raw = {"run": asdict(info), "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
               "rows": [asdict(r) for r in rows],
               "cells": [{"arch_i": r.cell.index, "arch": r.cell.arch, "val_accuracy": r.cell.val_accuracy,
                          "params": r.params, "scores": {k: (None if math.isinf(v) else v) for k, v in r.scores.items()},
                          "undefined": r.undefined, "seconds": r.seconds,
                          "file_scores": {k: (None if math.isnan(v) else v) for k, v in r.cell.file_scores.items()}}
                         for r in results]}
        args.json.write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    if not args.no_write:
        write_doc("proxies", doc_section(rows, results, args, info, curves))
        print(f"updated {DOC.relative_to(REPO_ROOT)} (section proxies); wall time {info.wall_seconds} s")
    print(target_line(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
