"""How repeatable a latency measurement is: the same network measured by separate probes.

What it measures
    A fixed network (default: the NAS-Bench-201 skeleton, C=16, N=5, every edge nor_conv_3x3,
    CIFAR-shaped 3x32x32 input, 10 classes; 11-25 ms at batch 1 on one core of the machines
    here) is measured by ``--runs`` separate probe runs, each a fresh process. Per run:
    the batch-1 median (normalised by the reference network, evaluator.measure.latency) and its
    inter-quartile range, the raw median the clock gave, the ratio to the reference, calls,
    whether the median settled, the throughput batch's images/s. Then the agreement of the
    runs: the largest median-to-median difference relative to their mean, normalised and raw.
    Target: the runs agree within 5% on this machine.

How to run (from the repository root)
    python bench/latency.py                         # CPU, 1 thread, 3 runs; updates docs/benchmarks.md
    python bench/latency.py --raw --no-write        # without the reference network, for comparison
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
from evaluator.measure.latency import LatencyError, LatencyReport, LatencySettings
from evaluator.measure.probe import measure_latency
from evaluator.spaces.nb201 import EDGE_FIELDS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _doc import DOC, REPO_ROOT, run_info, write_doc  # noqa: E402

CELL = dict.fromkeys(EDGE_FIELDS, "nor_conv_3x3")
TARGET = 0.05


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--threads", type=positive_int, default=1, help="CPU threads of the probe (default 1)")
    parser.add_argument("--runs", type=positive_int, default=3, help="separate probes (default 3)")
    parser.add_argument("--repeat", type=positive_int, default=1,
                        help="repeat the whole comparison this many times, one after the other (default 1)")
    parser.add_argument("--raw", action="store_true", help="no reference network: time the model alone")
    parser.add_argument("--drift", type=float, default=40.0, metavar="SECONDS",
                        help="first time the model and the reference in one process for this long, in windows of "
                             "5 s, to show how the machine's speed drifts (default 40; 0 skips it)")
    parser.add_argument("--batch", type=positive_int, default=32, help="throughput batch (default 32)")
    parser.add_argument("--no-write", action="store_true", help=f"do not update {DOC.relative_to(REPO_ROOT)}")
    args = parser.parse_args(argv)
    if args.runs < 2:
        parser.error("--runs must be at least 2: the point is the agreement between runs")
    return args


def agreement(values: list[float]) -> float:
    """Largest difference between the runs' values, relative to their mean."""
    return (max(values) - min(values)) / statistics.fmean(values)


def table(reports: list[LatencyReport], batch: int) -> list[str]:
    lines = ["| run | batch-1 median (ms) | IQR (ms) | raw median (ms) | raw IQR (ms) | / reference | reference this run (ms) "
             "| calls | settled | batch-%d images/s | probe s |" % batch,
             "|---:|---:|---:|---:|---:|---:|---:|---:|:---|---:|---:|"]
    for i, r in enumerate(reports, start=1):
        one, many = r.at(1), r.at(batch)
        rel = "" if one.relative is None else f"{one.relative:.3f}"
        ref = "" if r.reference_session_ms is None else f"{r.reference_session_ms:.3f}"
        lines.append(f"| {i} | {one.median_ms:.3f} | {one.iqr_ms:.3f} | {one.raw_median_ms:.3f} | {one.raw_iqr_ms:.3f} | "
                     f"{rel} | {ref} | {one.repeats} | {'yes' if one.stable else 'no'} | {many.images_per_s:.1f} | "
                     f"{r.seconds:.1f} |")
    return lines


def repetition_lines(agreements: list[tuple[float, float]]) -> list[str]:
    """Every repetition's agreement: how often the target holds, not just once."""
    met = sum(a <= TARGET for a, _ in agreements)
    lines = [f"The comparison was repeated {len(agreements)} times, one after the other (the table above is the last); "
             f"the target held in {met} of {len(agreements)}:", "",
             "| repetition | runs agree within | raw medians agree within |", "|---:|---:|---:|"]
    lines += [f"| {k} | {a:.1%} | {r:.1%} |" for k, (a, r) in enumerate(agreements, start=1)]
    return lines + [""]


def drift(seconds: float, threads: int, window: float = 5.0) -> list[str]:
    """One pinned process times the model and the reference network alternately, call by call;
    per window: the medians and their ratio. The table behind the reference network."""
    import os

    import torch

    from evaluator.measure.latency import reference_network
    from evaluator.models import build_model

    torch.set_num_threads(threads)
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > threads:
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[-threads:])
    torch.manual_seed(0)
    model, ref = build_model("nb201", CELL, (3, 32, 32), 10).eval(), reference_network().eval()
    x = torch.randn(1, 3, 32, 32)

    def timed(net) -> float:
        t0 = time.perf_counter()
        net(x)
        return (time.perf_counter() - t0) * 1000.0

    rows = ["| window | model median (ms) | reference median (ms) | model / reference |", "|---:|---:|---:|---:|"]
    with torch.inference_mode():
        for _ in range(20):
            model(x), ref(x)
        end, k = time.monotonic() + seconds, 0
        while time.monotonic() < end:
            a, b, w = [], [], time.monotonic() + window
            while time.monotonic() < w:
                b.append(timed(ref))
                a.append(timed(model))
            k += 1
            rows.append(f"| {k} | {statistics.median(a):.2f} | {statistics.median(b):.3f} | "
                        f"{statistics.median(a) / statistics.median(b):.2f} |")
    return rows


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    args = parse_args(argv)
    drift_rows = drift(args.drift, args.threads) if args.drift > 0 and args.device == "cpu" else []
    settings = LatencySettings(device=args.device, threads=args.threads, throughput_batch=args.batch,
                               calibrate=not args.raw)
    repetitions: list[list[LatencyReport]] = []
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    try:
        with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task("probing")
            for k in range(args.repeat):
                repetitions.append([])
                for i in range(args.runs):
                    bar.update(task, description=f"repetition {k + 1}/{args.repeat}: probe {i + 1}/{args.runs} on {args.device}")
                    repetitions[-1].append(measure_latency(settings, "nb201", CELL, (3, 32, 32), 10))
    except LatencyError as exc:
        print(f"latency: {exc}", file=sys.stderr)
        return 2
    reports = repetitions[-1]
    agreements = [(agreement([r.latency_ms for r in rep]), agreement([r.at(1).raw_median_ms for r in rep]))
                  for rep in repetitions]
    agree, raw_agree = agreements[-1]
    fp = reports[0].fingerprint
    device = fp.get("gpu") or fp["cpu"]
    calibrated = reports[0].reference_ms is not None
    lines = [
        f"## Latency repeatability: {args.device}",
        "",
        "Written by `bench/latency.py`. The NAS-Bench-201 skeleton (C=16, N=5, every edge nor_conv_3x3, 3x32x32 "
        f"input, 10 classes, untrained) measured by {args.runs} separate probe runs, one after the other (each a "
        f"fresh process, {args.threads} thread(s), {settings.warmup_seconds:g} s warm-up, calls timed in rounds of "
        f"{settings.round_size} for at least {settings.min_seconds:g} s and until the median's standard error is within "
        f"{settings.rel_tol:.0%} of it; at most {settings.max_repeats} calls or {settings.max_seconds:g} s per batch size). "
        + ("Each call of the model follows a call of the reference network (evaluator.measure.latency); the batch-1 median is "
           "the median of call / reference (the column '/ reference') times the reference's calibrated latency on this "
           f"device ({reports[-1].reference_ms:.3f} ms, the median over {reports[-1].calibration_sessions} probe sessions); "
           "the raw median is what the clock said." if calibrated else "Raw times: no reference network.")
        + (" Between rounds the probe moves the heap (evaluator.measure.latency.HeapShuffler), so the median covers many "
           "placements of the activation buffers, not the one a process happens to get." if args.device == "cpu" else ""),
        "",
        *table(reports, args.batch),
        "",
        f"Runs agree within {agree:.1%} median-to-median at batch 1 (target {TARGET:.0%}: "
        f"{'met' if agree <= TARGET else 'missed'})" + (f"; the raw medians within {raw_agree:.1%}." if calibrated else ".")
        + f" Device: {device}.",
        "",
        *(repetition_lines(agreements) if args.repeat > 1 else []),
        *[b for b in run_info(REPO_ROOT, started).bullets() if not b.startswith("- tables")],
    ]
    if drift_rows:
        lines[4:4] = [f"Why the reference network: one process, pinned to one core, timed the same model and the reference "
                      f"alternately, call by call, for {args.drift:g} s before the probes ran; medians per 5-s window. "
                      "The model's own time moves with the machine's speed; its ratio to the reference moves much less.",
                      "", *drift_rows, ""]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_doc(f"latency:{args.device}" + (":raw" if args.raw else ""), text)
        print(f"updated {DOC.relative_to(REPO_ROOT)} (section latency:{args.device}{':raw' if args.raw else ''})")
    if args.repeat > 1:
        print(f"latency: target met in {sum(a <= TARGET for a, _ in agreements)} of {args.repeat} repetitions")
    print(f"latency: agreement={agree:.3%} raw_agreement={raw_agree:.3%} "
          f"median_ms={statistics.fmean(r.latency_ms for r in reports):.3f} target={'met' if agree <= TARGET else 'missed'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
