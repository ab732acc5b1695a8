"""How repeatable LatencyProbe is: the same network measured by separate probes.

What it measures
    A fixed network (default: the NAS-Bench-201 skeleton, C=16, N=5, every edge nor_conv_3x3,
    CIFAR-shaped 3x32x32 input, 10 classes; about 9 ms at batch 1 on one EPYC core) is measured
    by ``--runs`` separate LatencyProbe runs, each a fresh process. Per run: batch-1 median and
    inter-quartile range, calls, whether the median settled, the throughput batch's images/s.
    Then the agreement of the runs: the largest median-to-median difference relative to their
    mean. Target: two runs agree within 5% on this machine.

How to run (from the repository root)
    python bench/latency.py                         # CPU, 1 thread, 2 runs; updates docs/benchmarks.md
    python bench/latency.py --device cuda --runs 3  # on a GPU machine
    python bench/latency.py --threads 2 --no-write
Run it on a quiet machine: other jobs on the same cores move the numbers (the probe reports
its spread, but cannot make a busy machine quiet).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from agent.commands.options import positive_int
from evaluator.latency import LatencyError, LatencyProbe, LatencyReport
from evaluator.spaces.nb201 import EDGE_FIELDS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _doc import DOC, REPO_ROOT, run_info, write_doc  # noqa: E402

CELL = dict.fromkeys(EDGE_FIELDS, "nor_conv_3x3")
TARGET = 0.05


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--threads", type=positive_int, default=1, help="CPU threads of the probe (default 1)")
    parser.add_argument("--runs", type=positive_int, default=2, help="separate probes (default 2)")
    parser.add_argument("--batch", type=positive_int, default=32, help="throughput batch (default 32)")
    parser.add_argument("--no-write", action="store_true", help=f"do not update {DOC.relative_to(REPO_ROOT)}")
    args = parser.parse_args(argv)
    if args.runs < 2:
        parser.error("--runs must be at least 2: the point is the agreement between runs")
    return args


def agreement(reports: list[LatencyReport]) -> float:
    """Largest median-to-median difference at batch 1, relative to the mean median."""
    medians = [r.latency_ms for r in reports]
    return (max(medians) - min(medians)) / statistics.fmean(medians)


def table(reports: list[LatencyReport], batch: int) -> list[str]:
    lines = ["| run | batch-1 median (ms) | IQR (ms) | calls | settled | batch-%d images/s | probe s |" % batch,
             "|---:|---:|---:|---:|:---|---:|---:|"]
    for i, r in enumerate(reports, start=1):
        one, many = r.at(1), r.at(batch)
        lines.append(f"| {i} | {one.median_ms:.3f} | {one.iqr_ms:.3f} | {one.repeats} | {'yes' if one.stable else 'no'} | "
                     f"{many.images_per_s:.1f} | {r.seconds:.1f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    args = parse_args(argv)
    probe = LatencyProbe(device=args.device, threads=args.threads, throughput_batch=args.batch)
    reports = []
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    try:
        with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task("probing")
            for i in range(args.runs):
                bar.update(task, description=f"probe {i + 1}/{args.runs} on {args.device}")
                reports.append(probe.measure("nb201", CELL, (3, 32, 32), 10))
    except LatencyError as exc:
        print(f"latency: {exc}", file=sys.stderr)
        return 2
    agree = agreement(reports)
    fp = reports[0].fingerprint
    device = fp.get("gpu") or fp["cpu"]
    lines = [
        f"## LatencyProbe repeatability: {args.device}",
        "",
        "Written by `bench/latency.py`. The NAS-Bench-201 skeleton (C=16, N=5, every edge nor_conv_3x3, 3x32x32 "
        f"input, 10 classes, untrained) measured by {args.runs} separate LatencyProbe runs (each a fresh process, "
        f"{args.threads} thread(s), {probe.warmup_seconds:g} s warm-up, calls timed in rounds of {probe.round_size} "
        f"until the median's standard error is within {probe.rel_tol:.0%} of it; at least {probe.min_repeats} calls, "
        f"at most {probe.max_repeats} or {probe.max_seconds:g} s per batch size).",
        "",
        *table(reports, args.batch),
        "",
        f"Runs agree within {agree:.1%} median-to-median at batch 1 (target {TARGET:.0%}: "
        f"{'met' if agree <= TARGET else 'missed'}). Device: {device}.",
        "",
        *[b for b in run_info(REPO_ROOT, started).bullets() if not b.startswith("- tables")],
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_doc(f"latency:{args.device}", text)
        print(f"updated {DOC.relative_to(REPO_ROOT)} (section latency:{args.device})")
    print(f"latency: agreement={agree:.3%} median_ms={statistics.fmean(r.latency_ms for r in reports):.3f} "
          f"target={'met' if agree <= TARGET else 'missed'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
