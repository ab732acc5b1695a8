"""How the portfolio's settings trade a weak LLM's harm against a strong LLM's help (NAS-Bench-201, in memory).

What it measures
    The offline 0.5B model takes about 18 s a proposal on 2 cores, too slow to tune the bandit's
    settings with it over many seeds. So its LLM operators are replaced by stand-ins that behave
    like a model with fixed op preferences: `llm` samples each of the six edges from the
    stand-in's op distribution; `llm_mutation` changes one edge of the tournament parent to an op
    drawn from that distribution. The weak stand-in has the offline model's measured taste
    (pooling and skips: none .20, skip .35, conv1x1 .10, conv3x3 .05, pool .30); the strong one
    a good model's (none .02, skip .20, conv1x1 .20, conv3x3 .55, pool .03). Everything else is
    the real portfolio, search graph and tabular evaluator, as in `bench/search_nb201.py`.
    For each setting, budget and stand-in: mean +- std over seeds of the 200-epoch test accuracy
    of the cell chosen by validation, and the LLM operators' share of the proposals; evolution
    and the portfolio without LLM operators are the reference rows.

    ``--guided``: the same for the default portfolio, guided by its surrogate with synflow evidence
    (scores read from bench/nb201_proxy_table.py's table, as bench/search_nb201.py does), where an
    LLM proposal that the surrogate ranks above ``llm_standing`` of the pool is evaluated in place
    of the surrogate's own pick: the share that decides how often a weak model's proposals are
    taken, and a strong one's. The LLM share is then the share of evaluated candidates the LLM
    operators proposed.

How to run (from the repository root; about a minute on 2 cores)
    python bench/portfolio_standins.py                   # 200 seeds, budgets 10 30, updates docs/benchmarks.md
    python bench/portfolio_standins.py --seeds 50 --no-write
    python bench/portfolio_standins.py --guided --seeds 50   # llm_standing of the guided portfolio
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agent.commands.options import positive_int
from agent.config import Settings
from agent.engine.runner import run_search
from agent.proposers import Portfolio
from agent.proposers.base import Proposal, ProposalContext, Proposer
from agent.proposers.portfolio import LLM_STANDING
from agent.store.recorder import MemoryRecorder
from agent.surrogate.selector import Selector
from evaluator.measure.probe import ModelProbe
from evaluator.tables.nb201 import SIGNAL_TABLE_NAME
from evaluator.spaces import get_space
from evaluator.spaces.nb201 import EDGE_FIELDS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _doc import DEFAULT_BENCHMARK_DIR, run_info, stderr_progress, write_doc  # noqa: E402
from search_nb201 import TableProxyEvidence  # noqa: E402

TASTES: dict[str, dict[str, float]] = {
    "weak": {"none": 0.20, "skip_connect": 0.35, "nor_conv_1x1": 0.10, "nor_conv_3x3": 0.05, "avg_pool_3x3": 0.30},
    "strong": {"none": 0.02, "skip_connect": 0.20, "nor_conv_1x1": 0.20, "nor_conv_3x3": 0.55, "avg_pool_3x3": 0.03},
}
SETTINGS: dict[str, dict[str, Any]] = {  # Portfolio keyword arguments; "default" is the class's own
    "default": {},
    "LLM right after the warm-up (llm_after 0)": {"llm_after": 0},
    "LLM after 5 outcomes": {"llm_after": 5},
    "LLM prior Beta(1,3), llm_after 0": {"llm_prior": (1.0, 3.0), "llm_after": 0},
    "first settings (no warm-up, evidence 1, Beta(1,1), llm_after 0)":
        {"warmup": 0, "evidence_weight": 1.0, "llm_prior": (1.0, 1.0), "llm_after": 0},
}

GUIDED: dict[str, float] = {  # the guided portfolio's llm_standing
    f"guided, llm_standing {v:g}" + (" (default)" if v == LLM_STANDING else "") + (" (only the pool's best)" if v == 1 else ""): v
    for v in (0.5, 0.75, 0.9, 1.0)
}


class StandInLLM:
    """Proposes like a model that only has op preferences: the portfolio's LLM operators, minus the model."""

    def __init__(self, taste: dict[str, float], seed: int) -> None:
        import random
        self.ops, self.weights = list(taste), list(taste.values())
        self.rng = random.Random(seed + 7919)

    def _op(self, exclude: str | None = None) -> str:
        while True:
            op = self.rng.choices(self.ops, self.weights)[0]
            if op != exclude:
                return op

    def propose_one(self, context: ProposalContext, parent: tuple[str, dict[str, Any], float] | None = None) -> Proposal:
        if parent is None:
            return Proposal(spec={f: self._op() for f in EDGE_FIELDS}, rationale="stand-in")
        parent_id, spec, _ = parent
        child = dict(spec)
        edge = self.rng.choice(EDGE_FIELDS)
        child[edge] = self._op(exclude=spec[edge])
        return Proposal(spec=child, parents=[parent_id], rationale="stand-in edit")


@dataclass(frozen=True)
class Result:
    setting: str
    llm: str
    budget: int
    seed: int
    test_accuracy: float
    llm_share: float


def search(tables: Path, budget: int, seed: int, proposer: Proposer | None, name: str,
           evaluated: bool = False) -> tuple[float, float]:
    """(test accuracy of the chosen cell, the LLM operators' share of the proposals, or with
    ``evaluated`` of the evaluated candidates)."""
    settings = Settings(task="nb201-cifar10", benchmark_dir=tables, proposer=name, budget=budget, seed=seed)
    recorder = MemoryRecorder()
    summary = run_search(settings, recorder=recorder, proposer=proposer)
    if evaluated:
        proposers = [c.proposer for c in recorder.candidates.values()]
        return summary.best.test_accuracy, sum(p.startswith("portfolio:llm") for p in proposers) / len(proposers)
    ops = (summary.operators or {}).get("operators") or {}
    share = sum(row["share"] for op, row in ops.items() if op.startswith("llm"))
    return summary.best.test_accuracy, share


def guided(space, seed: int, llm: StandInLLM | None, standing: float = LLM_STANDING) -> Portfolio:
    """The default portfolio (surrogate, synflow evidence from the table) with a stand-in LLM."""
    evidence = TableProxyEvidence(probe=ModelProbe(), space="nb201", input_shape=(3, 32, 32), num_classes=10,
                                  proxy="synflow")
    return Portfolio(space, seed, llm=llm, selector=Selector(seed=seed, cost=False), evidence=[evidence],
                     llm_standing=standing)


def run_all(tables: Path, budgets: list[int], seeds: int, guided_rows: bool = False) -> list[Result]:
    space = get_space("nb201")
    if guided_rows:
        cells = [("evolution", "-"), ("guided, no LLM", "-")] + list(itertools.product(GUIDED, TASTES))
    else:
        cells = [("evolution", "-"), ("portfolio-nollm", "-")] + list(itertools.product(SETTINGS, TASTES))
    results = []
    with stderr_progress(len(budgets) * len(cells), "simulating") as advance:
        for budget, (setting, taste) in itertools.product(budgets, cells):
            for seed in range(seeds):
                if setting == "evolution":
                    acc, share = search(tables, budget, seed, None, "evolution")
                elif setting == "portfolio-nollm":
                    acc, share = search(tables, budget, seed, Portfolio(space, seed), "portfolio")
                elif setting == "guided, no LLM":
                    acc, share = search(tables, budget, seed, guided(space, seed, None), "portfolio")
                elif setting in GUIDED:
                    portfolio = guided(space, seed, StandInLLM(TASTES[taste], seed), GUIDED[setting])
                    acc, share = search(tables, budget, seed, portfolio, "portfolio", evaluated=True)
                else:
                    portfolio = Portfolio(space, seed, llm=StandInLLM(TASTES[taste], seed), **SETTINGS[setting])
                    acc, share = search(tables, budget, seed, portfolio, "portfolio")
                results.append(Result(setting, taste, budget, seed, acc, share))
            advance(f"budget {budget} {setting} {taste}")
    return results


def table(results: list[Result], budgets: list[int], seeds: int) -> str:
    lines = ["| setting | LLM stand-in | " + " | ".join(f"budget {b}: acc (%) | LLM share" for b in budgets) + " |",
             "|:---|:---|" + "---:|---:|" * len(budgets)]
    keys = list(dict.fromkeys((r.setting, r.llm) for r in results))
    for setting, taste in keys:
        cells = []
        for budget in budgets:
            rows = [r for r in results if (r.setting, r.llm, r.budget) == (setting, taste, budget)]
            accs = [100 * r.test_accuracy for r in rows]
            sem = statistics.stdev(accs) / len(accs) ** 0.5
            cells += [f"{statistics.mean(accs):.2f} +- {sem:.2f}",
                      "" if taste == "-" else f"{100 * statistics.mean(r.llm_share for r in rows):.0f}%"]
        lines.append(f"| {setting} | {taste} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\nMean +- standard error of the mean over {seeds} seeds (0..{seeds - 1})."


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seeds", type=positive_int, default=200, help="searches per row and budget (default 200)")
    parser.add_argument("--budgets", type=positive_int, nargs="+", default=[10, 30], help="default: 10 30")
    parser.add_argument("--benchmark-dir", type=Path, default=DEFAULT_BENCHMARK_DIR,
                        help="folder with the NAS-Bench-201 tables (default: ../shared/benchdata/nb201)")
    parser.add_argument("--guided", action="store_true",
                        help="the surrogate-guided portfolio (the default) at several llm_standing values")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the per-seed results here")
    parser.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    args = parser.parse_args(argv)
    if args.seeds < 2:
        parser.error("--seeds must be at least 2")
    tables = args.benchmark_dir.expanduser().resolve()
    if not (tables / SIGNAL_TABLE_NAME).is_file():
        print(f"portfolio_standins: no NAS-Bench-201 tables: looked for {tables / SIGNAL_TABLE_NAME}; pass --benchmark-dir "
              "with the folder that holds them (docs/training.md, NAS-Bench-201 tables, says where to get them)", file=sys.stderr)
        return 2
    results = run_all(tables, args.budgets, args.seeds, args.guided)
    text = table(results, args.budgets, args.seeds)
    print(text)
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1) + "\n", encoding="utf-8")
    if not args.no_write:
        info = run_info(tables, started)
        guided_text = (" Here the portfolio is the default: guided by its surrogate with synflow evidence (scores "
                       "from `bench/nb201_proxy_table.py`'s table); an LLM proposal the surrogate ranks above "
                       "`llm_standing` of the pool is evaluated in place of the surrogate's own pick; the LLM share is "
                       "that of the evaluated candidates.") if args.guided else ""
        body = "\n".join([
            "## Portfolio settings with stand-in LLM operators (NAS-Bench-201 CIFAR-10)"
            + (": the guided portfolio's llm_standing" if args.guided else ""), "",
            "Written by `bench/portfolio_standins.py`. The portfolio's LLM operators are replaced by stand-ins "
            "with fixed op preferences: weak (the offline 0.5B model's taste: none .20, skip .35, conv1x1 .10, "
            "conv3x3 .05, pool .30) and strong (none .02, skip .20, conv1x1 .20, conv3x3 .55, pool .03); the rest "
            "is the real portfolio, search graph and tabular evaluator. Accuracy is the 200-epoch test accuracy "
            "of the cell chosen by 12-epoch validation accuracy." + guided_text, "", text, "", *info.bullets(),
            f"- wall time: {info.wall_seconds} s"])
        write_doc("portfolio_standins:guided" if args.guided else "portfolio_standins", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
