"""Per-candidate overhead of an evaluation pool: the time a candidate spends outside training.

What it measures
    Candidates of one workload go through each pool in ``POOLS``, every candidate in its own
    sandboxed process (the strongest isolation this machine has, as in a search), with the
    pool's own threads per job (a search with ``--workers 1``). Workloads:
      tiny    a tiny layers spec, 1 epoch on 256 digits images: training takes well under a
              second, so what is left is the overhead (the default)
      digits  a small residual spec, 5 epochs on all the digits training images: a typical
              digits candidate, to see whether spares slow real training down
    From each evaluation's ``overhead`` (measured on the trusted side by the pool,
    evaluator.pools.training):
      first_step  submission to the worker's ready message: just before the first training step
      boot        spawn (cold) or release of a spare (warm) to ready; first_step = prepare + boot
      prepare     the submit call's own work: the job's folder and files
      finish      the worker's last message to the recorded evaluation: exit, checks, cleanup
      overhead    first_step + finish: what a candidate costs beyond its training
      train       the worker's training seconds (its epochs, as it reports them)
    Median and p90 over the candidates. Two modes, each pool in its own block of ``--n``
    candidates, ``--rounds`` times (the order of the pools alternates, so that load from other jobs
    on a shared machine hits them alike):
      one-at-a-time  each candidate submitted ``--gap`` seconds after the previous one finished
                     (a coordinator that thinks between candidates; an LLM proposal takes longer),
                     so a warm pool's spare has had time to start
      back-to-back   the next candidate submitted the moment the previous one finished: the row
                     gives candidates per minute. A spare starts only on a core the running jobs'
                     threads leave free (evaluator.pools.training): with one job using every core it
                     starts when that job ends, so here it helps less than one at a time
    ``POOLS`` maps a name to a function building an EvaluationPool from (dataset, workdir): a new
    kind of pool is one more entry.

How to run (from the repository root; about 4 minutes on 2 cores)
    python bench/pool_overhead.py                        # tiny candidates; updates docs/benchmarks.md
    python bench/pool_overhead.py --workload digits --rounds 3
    python bench/pool_overhead.py --quick --no-write     # 3 candidates per pool and mode
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # this checkout's code, wherever it is installed
from _doc import DOC, REPO_ROOT, publish, run_info, stderr_progress  # noqa: E402

from evaluator.data import load_dataset  # noqa: E402
from evaluator.data.base import Dataset  # noqa: E402
from evaluator.pools.base import EvaluationPool, Job  # noqa: E402
from evaluator.spaces import get_space  # noqa: E402
from evaluator.pools.training import TrainingPool, job_threads  # noqa: E402
from sandbox.isolation import Isolation  # noqa: E402
from sandbox.limits import Limits  # noqa: E402

POOL_EPOCHS = 15  # the digits task's schedule; a workload's jobs train ``epochs`` of it (Job.fidelity)


@dataclass(frozen=True)
class Workload:
    spec: dict[str, Any]
    epochs: int
    images: int | None  # digits training images the candidates see (and half as many of validation and test); None: all
    what: str


WORKLOADS = {
    "tiny": Workload({"stem": {"channels": 8}, "stages": [{"channels": 16, "stride": 2}]}, 1, 256,
                     "a tiny layers spec (an 8-channel stem, one 16-channel stage), 1 epoch on 256 digits images"),
    "digits": Workload({"stem": {"channels": 16}, "stages": [{"channels": 32, "block": "residual"},
                                                             {"channels": 64, "stride": 2}]}, 5, None,
                       "a small residual layers spec (16-32-64 channels), 5 epochs on all 1,077 digits training images: "
                       "a typical digits candidate's few seconds of training"),
}
PHASES = ("first_step", "boot", "prepare", "finish", "ray", "overhead", "train")
MODES = ("one-at-a-time", "back-to-back")


def local_pool(warm: int) -> Callable[[Dataset, Path], EvaluationPool]:
    def make(dataset: Dataset, workdir: Path) -> EvaluationPool:
        return TrainingPool(dataset, "layers", workdir=workdir, epochs=POOL_EPOCHS, limits=Limits(wall_seconds=300),
                            isolation=Isolation(), warm=warm)
    return make


_CLUSTER: list[Any] = []  # the private Ray cluster of the ray pools, started once and closed at the end


def ray_pool(warm: int) -> Callable[[Dataset, Path], EvaluationPool]:
    """A one-actor Ray pool on a private cluster (127.0.0.1): the local pool's job inside an actor,
    plus the coordinator's queue and the round trips to the actor."""
    def make(dataset: Dataset, workdir: Path) -> EvaluationPool:
        from evaluator.pools.ray_cluster import connect
        from evaluator.pools.ray import RayPool

        if not _CLUSTER:
            _CLUSTER.append(connect(None))
        return RayPool(dataset, "layers", cluster=_CLUSTER[0], run_id="bench", workdir=workdir, epochs=POOL_EPOCHS,
                       workers=1, limits=Limits(wall_seconds=300), threads=job_threads(1), isolation=Isolation(),
                       pool_options={"warm": warm})
    return make


POOLS: dict[str, Callable[[Dataset, Path], EvaluationPool]] = {
    "local-cold": local_pool(0),
    "local-warm": local_pool(1),
    "ray-cold": ray_pool(0),
    "ray-warm": ray_pool(1),
}


def digits(cache: Path, images: int | None) -> Dataset:
    d = load_dataset("digits", cache_dir=cache)
    if images is None:
        return d
    half = images // 2
    return replace(d, x_train=d.x_train[:images], y_train=d.y_train[:images], x_val=d.x_val[:half],
                   y_val=d.y_val[:half], x_test=d.x_test[:half], y_test=d.y_test[:half]).check()


def run_block(pool: EvaluationPool, spec: dict[str, Any], epochs: int, n: int, mode: str, gap: float, name: str,
              advance: Callable[..., None]) -> dict[str, Any]:
    """``n`` candidates through ``pool``, one at a time or back to back; one record per candidate."""
    records = []
    time.sleep(gap)  # the pool settles (a warm pool starts its spare) before the first candidate
    block_start = time.monotonic()
    for i in range(n):
        if mode == "one-at-a-time" and i:
            time.sleep(gap)
        submitted = time.monotonic()
        pool.submit(Job(candidate_id=f"{name}-{mode}-c{i:03d}", spec=spec, seed=i, fidelity=epochs))
        evaluation = None
        while evaluation is None:
            evaluation = next((e.evaluation for e in pool.events(timeout=60) if e.kind == "finished"), None)
        wall = time.monotonic() - submitted
        if evaluation.status.value != "ok":
            raise SystemExit(f"{name}: candidate {i} ended {evaluation.status.value}: {evaluation.error}")
        over = dict(evaluation.metrics.get("overhead") or {})
        over["ray"] = over.get("ray_queue", 0.0) + over.get("ray_transport", 0.0)  # 0 for a local pool
        over["overhead"] = over["first_step"] + over["finish"] + over["ray"]
        over["train"] = evaluation.device_seconds
        records.append({"candidate": i, "wall": wall, "sandbox": evaluation.metrics.get("sandbox"), **over})
        advance(f"{name} {mode} {i + 1}/{n}: first step {over['first_step']:.2f} s, finish {over['finish']:.2f} s",
                line=False)
    return {"pool": name, "mode": mode, "n": n, "seconds": time.monotonic() - block_start, "candidates": records}


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10, method="inclusive")[8] if len(values) > 1 else values[0]


def cell(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} / {p90(values):.2f}"


def table(blocks: list[dict[str, Any]]) -> list[str]:
    """One row per pool and mode, over every round's candidates (the rate over every round's time)."""
    lines = ["| pool | mode | n | " + " | ".join(f"{p} s" for p in PHASES) + " | warm share | candidates / min |",
             "|---|---|---|" + "---|" * len(PHASES) + "---|---|"]
    for key in dict.fromkeys((b["pool"], b["mode"]) for b in blocks):
        mine = [b for b in blocks if (b["pool"], b["mode"]) == key]
        rs = [r for b in mine for r in b["candidates"]]
        cells = [cell([r[p] for r in rs]) for p in PHASES]
        warm = sum(bool(r.get("warm")) for r in rs)
        rate = f"{60 * len(rs) / sum(b['seconds'] for b in mine):.1f}" if key[1] == "back-to-back" else "-"
        lines.append(f"| {key[0]} | {key[1]} | {len(rs)} | " + " | ".join(cells) + f" | {warm}/{len(rs)} | {rate} |")
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--pools", nargs="+", choices=list(POOLS), default=list(POOLS))
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--workload", choices=list(WORKLOADS), default="tiny",
                        help="tiny (default): overhead alone; digits: whether spares slow real training down")
    parser.add_argument("--n", type=int, help="candidates per pool, mode and round (default 5; --quick 3)")
    parser.add_argument("--rounds", type=int,
                        help="rounds of every pool and mode, the pools' order alternating, so that load from other "
                             "jobs hits them alike (default 2; --quick 1)")
    parser.add_argument("--gap", type=float,
                        help="one-at-a-time: seconds between a result and the next submission (default 5; --quick 4)")
    parser.add_argument("--quick", action="store_true", help="fewer candidates and a shorter gap, for a quick look")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write every candidate's numbers here")
    parser.add_argument("--no-write", action="store_true", help=f"do not update {DOC.relative_to(REPO_ROOT)}")
    args = parser.parse_args(argv)
    args.n = args.n if args.n is not None else 3 if args.quick else 5
    args.rounds = args.rounds if args.rounds is not None else 1 if args.quick else 2
    args.gap = args.gap if args.gap is not None else 4.0 if args.quick else 5.0
    if args.n < 1 or args.rounds < 1 or args.gap < 0:
        parser.error("--n and --rounds must be at least 1, --gap not negative")
    return args


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    args = parse_args(argv)
    load_before = os.getloadavg()[0]
    blocks = []
    with tempfile.TemporaryDirectory(prefix="pool-overhead-") as tmp, \
            stderr_progress(args.rounds * len(args.pools) * len(args.modes) * args.n, "pool overhead") as advance:
        workload = WORKLOADS[args.workload]
        dataset = digits(Path(tmp) / "cache", workload.images)
        spec = get_space("layers", input_shape=dataset.input_shape, num_classes=dataset.num_classes).validate(workload.spec)
        for r in range(args.rounds):
            for m, mode in enumerate(args.modes):
                order = args.pools if (r + m) % 2 == 0 else list(reversed(args.pools))  # each pool first in turn
                for name in order:
                    pool = POOLS[name](dataset, Path(tmp) / f"{name}-{mode}-{r}")
                    try:
                        blocks.append(run_block(pool, spec, workload.epochs, args.n, mode, args.gap, name, advance)
                                      | {"round": r})
                    finally:
                        pool.close()
    if _CLUSTER:
        _CLUSTER.pop().close()
    blocks.sort(key=lambda b: (args.modes.index(b["mode"]), args.pools.index(b["pool"]), b["round"]))
    info = run_info(REPO_ROOT, started)
    sandbox = next((r["sandbox"] for b in blocks for r in b["candidates"] if r.get("sandbox")), "none")
    workload = WORKLOADS[args.workload]
    lines = [f"## Per-candidate overhead of the evaluation pool: {args.workload} candidates (bench/pool_overhead.py)", "",
             *info.bullets()[:3], *info.bullets()[4:],
             f"- load average {load_before:.2f} when it started; wall time {info.wall_seconds} s",
             f"- {args.rounds} round(s) of {args.n} candidates per pool and mode, the pools' order alternating: {workload.what}; the pool's default threads per job "
             f"({os.cpu_count()} cores, 1 job at a time); every job sandboxed ({sandbox}); one-at-a-time with "
             f"{args.gap:g} s between a result and the next submission",
             "- seconds, median / p90; first_step = submission to just before the first training step, finish = "
             "the worker's last message to the recorded result, ray = the Ray pool's own cost (the coordinator's queue "
             "and its round trips to the actor), overhead = first_step + finish + ray; train = the worker's training "
             "seconds", "", *table(blocks)]
    if args.json is not None:
        args.json.write_text(json.dumps({"run": vars(info), "load_average_at_start": load_before,
                                         "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                                         "blocks": blocks}, indent=2) + "\n", encoding="utf-8")
    publish(f"pool_overhead:{args.workload}", "\n".join(lines), write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
