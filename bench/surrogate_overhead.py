"""What choosing a proposal costs: the pool's refill, the surrogate's fit and the acquisition.

What it measures
    A surrogate-guided portfolio (agent.proposers.Portfolio with agent.surrogate.Selector, the
    default pool of 256) is told N finished candidates (N = 10, 100, 1000), then asked for
    proposals; the wall time of each ``propose`` call is timed (median of 5 calls, each after one
    more observation, so every call refits). Spaces: NAS-Bench-201 (values from the 12-epoch
    table when --benchmark-dir has it, else random) and the layers space on the 8x8 digits'
    shape (random values: the cost does not depend on them). ``batch 4`` asks for 4 proposals at
    once (``--workers 4``). Targets: under 1 s at 100 evaluations and under 5 s at 1,000 on 2 cores.
    No LLM. ``nb201 + synflow`` is the NAS-Bench-201 default (``proxy_evidence = "auto"``): every
    new pool member is scored in the real model probe (one thread) before the surrogate ranks the
    pool; its rows give the proxy's share of each choice, and the first choice (the probe's start
    and the whole first pool scored), which the median leaves out.

How to run (from the repository root; about 2 minutes on 2 cores)
    python bench/surrogate_overhead.py                  # updates docs/benchmarks.md
    python bench/surrogate_overhead.py --sizes 10 100 --no-write
"""

from __future__ import annotations

import argparse
import csv
import random
import statistics
import sys
import time
from pathlib import Path

from agent.commands.options import positive_int
from agent.proposers import Portfolio, ProposalContext
from agent.surrogate.evidence import ProxyEvidence
from agent.surrogate.selector import Selector
from evaluator.measure.probe import ModelProbe
from evaluator.records import Candidate, Evaluation, Status
from evaluator.spaces import get_space
from evaluator.spaces.nb201 import arch_string
from evaluator.tables.nb201 import SIGNAL_TABLE_NAME

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _doc import DEFAULT_BENCHMARK_DIR, run_info, stderr_progress, write_doc  # noqa: E402

TARGETS = {100: 1.0, 1000: 5.0}
CALLS = 5


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--benchmark-dir", type=Path, default=DEFAULT_BENCHMARK_DIR)
    parser.add_argument("--sizes", type=positive_int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--no-write", action="store_true")
    return parser.parse_args(argv)


def _values(benchmark_dir: Path) -> dict[str, float]:
    table = benchmark_dir / SIGNAL_TABLE_NAME
    if not table.is_file():
        return {}
    with table.open() as f:
        return {r["arch"]: float(r["cifar10-val"]) / 100 for r in csv.DictReader(f)}


def measure(space_name: str, n: int, batch: int, values: dict[str, float], proxy: str | None = None
            ) -> tuple[float, float, float]:
    """(median seconds per choice, median proxy seconds per choice, seconds of the first choice)."""
    space = get_space(space_name, input_shape=(3, 32, 32) if space_name == "nb201" else (1, 8, 8), num_classes=10)
    rng = random.Random(n)
    evidence = [] if proxy is None else [ProxyEvidence(probe=ModelProbe(threads=1, proxies=(proxy,)), space=space_name,
                                                       input_shape=space.input_shape, num_classes=10, proxy=proxy)]
    portfolio = Portfolio(space, seed=0, selector=Selector(seed=0), evidence=evidence)
    seen: set[str] = set()

    def tell(i: int) -> None:
        for _ in range(100):
            spec = space.sample(rng)
            key = space.canonical_key(spec)
            if key not in seen:
                break
        seen.add(key)
        value = values.get(arch_string(spec), rng.random()) if space_name == "nb201" else rng.random()
        cand = Candidate(candidate_id=f"c{i}", run_id="r", seq=i, space=space_name, spec=spec, canonical_key=key,
                         proposer="portfolio:random")
        portfolio.observe(cand, Evaluation(candidate_id=f"c{i}", status=Status.OK, val_accuracy=value, wall_seconds=5.0))

    for i in range(n):
        tell(i)
    first = 0.0
    if evidence:  # the first choice starts the probe and scores the whole first pool: timed apart
        started = time.perf_counter()
        portfolio.propose(batch, ProposalContext(seen=frozenset(seen), evaluations=n, budget=n + CALLS + 10))
        first = time.perf_counter() - started
        tell(n)
        n += 1
    times, proxy_times = [], []
    try:
        for call in range(CALLS):
            scored_before = evidence[0].seconds if evidence else 0.0
            started = time.perf_counter()
            portfolio.propose(batch, ProposalContext(seen=frozenset(seen), evaluations=n + call, budget=n + CALLS + 10))
            times.append(time.perf_counter() - started)
            proxy_times.append(evidence[0].seconds - scored_before if evidence else 0.0)
            tell(n + call)
    finally:
        for e in evidence:
            e.close()
    return statistics.median(times), statistics.median(proxy_times), first


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    args = parse_args(argv)
    values = _values(args.benchmark_dir)
    cases = [(space, n, batch, None) for space in ("nb201", "layers") for n in args.sizes for batch in (1, 4)]
    cases += [("nb201", n, 1, "synflow") for n in args.sizes]
    rows = []
    with stderr_progress(len(cases), "choices") as advance:
        for space, n, batch, proxy in cases:
            seconds, proxy_seconds, first = measure(space, n, batch, values, proxy)
            rows.append((space + (f" + {proxy}" if proxy else ""), n, batch, seconds, proxy_seconds, first, proxy))
            advance(f"{rows[-1][0]} {n} evaluations batch {batch}: {seconds:.2f} s")
    lines = ["| space | evaluations | batch | s per choice (median of 5) | of which proxy s | first choice s | target |",
             "|:---|---:|---:|---:|---:|---:|---:|"]
    for space, n, batch, seconds, proxy_seconds, first, proxy in rows:
        target = f"< {TARGETS[n]:g} s" if n in TARGETS else ""
        lines.append(f"| {space} | {n} | {batch} | {seconds:.2f} | {f'{proxy_seconds:.2f}' if proxy else ''} | "
                     f"{f'{first:.1f}' if proxy else ''} | {target} |")
    print("\n".join(lines))
    if not args.no_write:
        info = run_info(args.benchmark_dir, started)
        write_doc("surrogate_overhead", "\n".join([
            "## Surrogate overhead: seconds to choose a proposal",
            "",
            "Written by `bench/surrogate_overhead.py`. A surrogate-guided portfolio (pool of 256) told N finished "
            "candidates is asked for proposals; each call refills the pool, refits the Gaussian process (on at most "
            "250 evaluations: the best 125 and a seeded sample of the rest) and scores the pool by expected "
            "improvement. Median of 5 calls. Batch 4 is `--workers 4`'s request. `nb201 + synflow` is the "
            "NAS-Bench-201 default: each call also scores the pool's new members with synflow in the model probe "
            "(one thread; \"of which proxy s\"); its first choice (the probe's start and the first pool of 256 "
            "scored) is timed apart, not in the median.",
            "",
            *lines,
            "",
            *info.bullets(),
            f"- wall time: {info.wall_seconds} s",
        ]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
