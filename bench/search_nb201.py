"""Random search vs regularized evolution on NAS-Bench-201 (tabular, in memory).

What it measures
    For each proposer (regularized evolution, random search) and each budget (10, 50, 100,
    200 evaluations), it runs one search per seed (20 seeds, 0..19) exactly as
    `agent search --task nb201-cifar10 --proposer P --budget B --seed S` does: the same
    proposer classes, the same tabular evaluator and the same search graph, recorded in
    memory instead of DuckDB. Each search chooses its cell by the 12-epoch validation
    accuracy; the number reported is that cell's final-report accuracy (`best.test_accuracy`:
    the 200-epoch test accuracy on CIFAR-10, the 12-epoch test accuracy on CIFAR-100 and
    ImageNet16-120, which have no 200-epoch table here). Per (proposer, budget): mean +- sample
    std over seeds, and the relative improvement over the random-sample average,
    100 * (acc - acc_rand) / acc_rand, where acc_rand is the mean final-report accuracy of all
    15,625 cells. The optimum of the table and the cell best by validation are shown for
    reference.

How to run (from the repository root; about 20 s per task on 2 cores, searches run in memory)
    python bench/search_nb201.py                              # nb201-cifar10, updates docs/benchmarks.md
    python bench/search_nb201.py --task nb201-cifar100
    python bench/search_nb201.py --seeds 5 --budgets 10 100 --no-write --json /tmp/raw.json
    --benchmark-dir defaults to ../shared/benchdata/nb201 next to the repository; a missing
    table is reported with the path that was tried (exit 2).

Results (20 seeds, mean +- std in percent, AMD EPYC 2 cores; full tables in docs/benchmarks.md)
    nb201-cifar10, 200-epoch test accuracy; random-sample average 87.06, optimum 94.37
        budget 100: evolution 94.12 +- 0.24 (+8.11%), random 93.83 +- 0.15 (+7.77%)
        budget 200: evolution 94.30 +- 0.14 (+8.31%), random 93.90 +- 0.21 (+7.85%)
        (published on this space: random search about 93.7, regularized evolution about 93.9)
    nb201-cifar100, 12-epoch test accuracy (no 200-epoch table; not comparable to papers' 200-epoch
    numbers); random-sample average 40.40, optimum 61.18
        budget 100: evolution 60.53 +- 0.73 (+49.82%), random 59.07 +- 0.65 (+46.20%)
        budget 200: evolution 61.00 +- 0.20 (+50.98%), random 59.34 +- 0.59 (+46.87%)
    Percentages are relative improvements over the random-sample average. Up to budget 20
    (the population size) evolution is still drawing its random initial population with the
    same seeded generator as random search, so the two give identical results there.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar
from unittest.mock import patch


from agent.commands.options import positive_int
from agent.config import Settings
from agent.engine.runner import run_search
from agent.proposers import Portfolio
from agent.proposers.portfolio import LLM_STANDING
from agent.engine import guidance
from agent.surrogate.evidence import ProxyEvidence
from agent.store.recorder import MemoryRecorder
from evaluator.errors import ArchAgentError
from evaluator.tables.nb201 import SIGNAL_TABLE_NAME
from evaluator.pools.base import Job
from evaluator.records import Purpose, Status
from evaluator.spaces import get_space
from evaluator.spaces.nb201 import EDGE_FIELDS, OPS, arch_string
from evaluator.pools.tabular import TabularBenchmark
from evaluator.tasks import TASK_NAMES, resolve_task

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _doc import DEFAULT_BENCHMARK_DIR, DOC, REPO_ROOT, RunInfo, run_info, stderr_progress, write_doc  # noqa: E402
from nb201_proxy_table import SHAPES as PROXY_SHAPES, default_path as default_proxy_path  # noqa: E402

BASELINES = ("evolution", "random")
LLM_PROPOSERS = ("portfolio", "llm")
SURROGATE = ("default", "no-proxies", "prior")  # the portfolio without an LLM, surrogate on: as is, without synflow, + a prior run
ALL_PROPOSERS = BASELINES + LLM_PROPOSERS + ("portfolio-nollm",) + SURROGATE
HEADLINE_BUDGET = 100
PRIOR_TASK = {"nb201-cifar10": "nb201-cifar100", "nb201-cifar100": "nb201-cifar10", "nb201-imagenet16": "nb201-cifar10"}
PRIOR_BUDGET = 100
PRIOR_SEED = 10_000  # the prior run of seed S uses seed PRIOR_SEED + S
PRIOR_RUNS: dict[tuple, tuple[MemoryRecorder, str]] = {}  # (task, tables, prior budget, seed) -> where its prior run is


#############################################
#                Arguments                  #
#############################################

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--task", choices=TASK_NAMES, default="nb201-cifar10", help="default: nb201-cifar10")
    parser.add_argument("--benchmark-dir", type=Path, default=DEFAULT_BENCHMARK_DIR,
                        help=f"folder with {SIGNAL_TABLE_NAME} (default: ../shared/benchdata/nb201 next to the repository)")
    parser.add_argument("--seeds", type=positive_int, default=20, help="searches per (proposer, budget), seeds 0..N-1 (default 20)")
    parser.add_argument("--budgets", type=positive_int, nargs="+", default=[10, 50, 100, 200],
                        help="evaluations per search (default: 10 50 100 200)")
    parser.add_argument("--proposers", nargs="+", choices=ALL_PROPOSERS, default=list(BASELINES),
                        help="default: evolution random. portfolio and llm use the LLM given by --llm (the portfolio with "
                             "its surrogate); portfolio-nollm is the bandit without LLM operators or surrogate (the "
                             "previous default); default is `agent search` without flags (the portfolio without LLM, "
                             "surrogate on, synflow evidence); no-proxies adds --proxy-evidence off; prior adds --prior: "
                             f"a {PRIOR_BUDGET}-evaluation default run on another data set. Synflow scores are read from "
                             "bench/nb201_proxy_table.py's table, with the seconds the probe took for them")
    parser.add_argument("--llm", choices=["local", "openai"], default="local",
                        help="LLM backend of portfolio and llm (default local: the offline model)")
    parser.add_argument("--model", help="LLM model (default: the offline model)")
    parser.add_argument("--prior-budget", type=positive_int, default=PRIOR_BUDGET,
                        help=f"evaluations of the prior run of the prior rows (default {PRIOR_BUDGET})")
    parser.add_argument("--proxy-tables", type=Path, default=None, metavar="DIR",
                        help="folder of bench/nb201_proxy_table.py's synflow tables (default: runs/bench-cache)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the raw per-seed results here")
    parser.add_argument("--no-write", action="store_true", help=f"do not update {DOC.relative_to(REPO_ROOT)}")
    args = parser.parse_args(argv)
    if args.seeds < 2:
        parser.error("--seeds must be at least 2 (the table reports a standard deviation over seeds)")
    args.budgets = sorted(set(args.budgets))
    return args


#############################################
#        The table: baseline and optimum    #
#############################################

@dataclass(frozen=True)
class TableFacts:
    """What every search on this task is measured against (accuracies are fractions)."""

    final_source: str  # what the final-report accuracy is
    random_sample_average: float  # mean final-report accuracy of all cells
    optimum: float  # best final-report accuracy of any cell
    best_by_validation: float  # final-report accuracy of the cell(s) with the best search signal


def table_facts(benchmark: TabularBenchmark) -> TableFacts:
    """Evaluate every cell of the space through the same evaluator the searches use."""
    finals = [benchmark.evaluate(Job(candidate_id=f"cell-{i}", spec=dict(zip(EDGE_FIELDS, ops)), purpose=Purpose.FINAL))
              for i, ops in enumerate(itertools.product(OPS, repeat=len(EDGE_FIELDS)))]
    ok = [e for e in finals if e.status is Status.OK]
    best_val = max(e.val_accuracy for e in ok)
    return TableFacts(
        final_source=benchmark.final_source,
        random_sample_average=benchmark.random_sample_average(),
        optimum=max(e.test_accuracy for e in ok),
        best_by_validation=statistics.fmean(e.test_accuracy for e in ok if e.val_accuracy == best_val),
    )


#############################################
#                 Searches                  #
#############################################

@dataclass(frozen=True)
class SeedResult:
    """One search: the cell it chose by validation and that cell's final report (fractions)."""

    proposer: str
    budget: int
    seed: int
    test_accuracy: float
    val_accuracy: float
    arch: str
    evaluations: int
    duplicates_skipped: int
    wall_seconds: float
    duplicate_evaluations: int  # evaluated candidates whose cell another evaluated candidate already had
    llm_calls: int
    llm_seconds: float
    llm_share: float | None  # portfolio: share of proposals made by its LLM operators
    proxy_scored: int = 0  # proxy evidence: pool proposals scored
    proxy_seconds: float = 0.0  # proxy evidence: the probe's seconds for them (measured when the table was made)


class TableProxyEvidence(ProxyEvidence):
    """The search's proxy evidence (agent.surrogate.evidence) with each score read from the table
    that bench/nb201_proxy_table.py made with the same model probe (the scores are deterministic),
    so hundreds of searches need not rebuild each cell; a cell's first score in a search counts
    the seconds the probe took for it. Its probe never starts."""

    tables: ClassVar[dict[tuple, dict[str, tuple[float | None, float]]]] = {}
    folder: ClassVar[Path | None] = None  # where the tables are (None: bench/nb201_proxy_table.py's default)

    def _score(self, member):
        if self.proxy != "synflow":
            raise ArchAgentError(f"the proxy tables hold synflow, not {self.proxy}")
        score, seconds = self._table()[arch_string(member.spec)]
        self.seconds += seconds
        self.scored += 1
        return score

    def _table(self) -> dict[str, tuple[float | None, float]]:
        shape = (tuple(self.input_shape), self.num_classes)
        if shape not in self.tables:
            task = next(t for t, s in PROXY_SHAPES.items() if (tuple(s[0]), s[1]) == shape)
            path = default_proxy_path(task, ("synflow",))
            if self.folder is not None:
                path = self.folder / path.name
            if not path.is_file():
                raise ArchAgentError(f"no proxy table at {path}",
                                     hint=f"make it with `python bench/nb201_proxy_table.py --task {task}` "
                                          "(about 25 minutes on one core), then run this again")
            with path.open() as f:
                self.tables[shape] = {r["arch"]: (float(r["synflow"]) if r["synflow"] else None, float(r["seconds"]))
                                      for r in csv.DictReader(f)}
        return self.tables[shape]


def search_one(task: str, benchmark_dir: Path, proposer: str, budget: int, seed: int,
               llm: str = "local", model: str | None = None, prior_budget: int = PRIOR_BUDGET) -> SeedResult:
    recorder = MemoryRecorder()
    extra: dict = {"llm": llm, "model": model} if proposer in LLM_PROPOSERS else {}
    with patch.object(guidance, "ProxyEvidence", TableProxyEvidence):  # every search here, the prior runs too
        if proposer == "prior":  # the prior run of a seed is the same at every budget: recorded once
            key = (task, benchmark_dir, prior_budget, seed)
            if key not in PRIOR_RUNS:
                prior = Settings(task=PRIOR_TASK[task], benchmark_dir=benchmark_dir, budget=prior_budget,
                                 seed=PRIOR_SEED + seed)
                PRIOR_RUNS[key] = (recorder, run_search(prior, recorder=recorder).run_id)
            recorder, run_id = PRIOR_RUNS[key]
            extra["priors"] = [run_id]
        if proposer == "no-proxies":
            extra["proxy_evidence"] = "off"
        settings = Settings(task=task, benchmark_dir=benchmark_dir, budget=budget, seed=seed,
                            proposer=None if proposer in SURROGATE else proposer.removesuffix("-nollm"), **extra)
        own = Portfolio(get_space("nb201"), seed) if proposer == "portfolio-nollm" else None  # the bandit alone
        summary = run_search(settings, recorder=recorder, proposer=own)
    proxies = ((summary.surrogate or {}).get("proxy_evidence") or {"scored": 0, "seconds": 0.0})
    evaluated = [c.canonical_key for c in recorder.candidates.values()
                 if c.run_id == summary.run_id and c.status.value != "invalid"]
    ops = (summary.operators or {}).get("operators")
    best = summary.best
    if best is None or best.test_accuracy is None:
        raise SystemExit(f"{task} {proposer} budget {budget} seed {seed}: the search has no final report "
                         f"({best.test_source if best else 'no candidate finished ok'})")
    return SeedResult(proposer=proposer, budget=budget, seed=seed, test_accuracy=best.test_accuracy,
                      val_accuracy=best.val_accuracy, arch=best.arch, evaluations=summary.evaluations,
                      duplicates_skipped=summary.duplicates_skipped, wall_seconds=summary.wall_seconds,
                      duplicate_evaluations=len(evaluated) - len(set(evaluated)),
                      llm_calls=summary.llm["calls"] if summary.llm else 0,
                      llm_seconds=summary.llm["seconds"] if summary.llm else 0.0,
                      llm_share=sum(ops[o]["share"] for o in ops if o.startswith("llm")) if ops else None,
                      proxy_scored=proxies["scored"], proxy_seconds=proxies["seconds"])


def run_all(task: str, benchmark_dir: Path, budgets: list[int], seeds: int, proposers: list[str],
            llm: str = "local", model: str | None = None, prior_budget: int = PRIOR_BUDGET) -> list[SeedResult]:
    results: list[SeedResult] = []
    with stderr_progress(len(proposers) * len(budgets) * seeds, "searching") as advance:
        for budget, proposer in itertools.product(budgets, proposers):
            started = time.perf_counter()
            for seed in range(seeds):
                results.append(search_one(task, benchmark_dir, proposer, budget, seed, llm, model, prior_budget))
                done = seed == seeds - 1
                advance(f"{proposer} budget {budget}: {seed + 1}/{seeds} seeds"
                        + (f" in {time.perf_counter() - started:.1f} s" if done else ""), done)
    return results


#############################################
#               Statistics                  #
#############################################

@dataclass(frozen=True)
class Row:
    """One (proposer, budget) over all seeds; accuracies are fractions, gain is in percent."""

    proposer: str
    budget: int
    mean: float
    std: float  # sample standard deviation over seeds
    gain: float  # 100 * (mean - random-sample average) / random-sample average
    val_mean: float  # mean search signal of the chosen cells
    wall_mean: float  # seconds per search
    llm_calls_mean: float
    llm_share_mean: float | None
    duplicate_evaluations: int  # over all seeds
    proxy_seconds_mean: float = 0.0  # proxy evidence: seconds of proxy compute per search


def gain(acc: float, facts: TableFacts) -> float:
    return 100.0 * (acc - facts.random_sample_average) / facts.random_sample_average


def aggregate(results: list[SeedResult], facts: TableFacts) -> list[Row]:
    rows = []
    for (budget, proposer), group in itertools.groupby(results, key=lambda r: (r.budget, r.proposer)):
        runs = list(group)
        mean = statistics.fmean(r.test_accuracy for r in runs)
        shares = [r.llm_share for r in runs if r.llm_share is not None]
        rows.append(Row(proposer=proposer, budget=budget, mean=mean, std=statistics.stdev(r.test_accuracy for r in runs),
                        gain=gain(mean, facts), val_mean=statistics.fmean(r.val_accuracy for r in runs),
                        wall_mean=statistics.fmean(r.wall_seconds for r in runs),
                        llm_calls_mean=statistics.fmean(r.llm_calls for r in runs),
                        llm_share_mean=statistics.fmean(shares) if shares else None,
                        duplicate_evaluations=sum(r.duplicate_evaluations for r in runs),
                        proxy_seconds_mean=statistics.fmean(r.proxy_seconds for r in runs)))
    return rows


#############################################
#                 Reports                   #
#############################################

def pct(x: float) -> str:
    return f"{100.0 * x:.2f}"


def text_table(task: str, rows: list[Row], facts: TableFacts, seeds: int) -> str:
    head = (f"{task}: {facts.final_source}, of the cell chosen by 12-epoch validation accuracy;\n"
            f"mean +- std over {seeds} seeds (0..{seeds - 1}), in percent\n\n")
    fmt = "{:>6}  {:<15}  {:>15}  {:>18}  {:>11}  {:>10}  {:>9}  {:>9}  {:>9}  {:>5}"
    lines = [fmt.format("budget", "proposer", "final acc (%)", "vs rand-sample avg", "val acc (%)", "s / search",
                        "proxy s", "LLM calls", "LLM share", "dup"),
             fmt.format("-" * 6, "-" * 15, "-" * 15, "-" * 18, "-" * 11, "-" * 10, "-" * 9, "-" * 9, "-" * 9, "-" * 5)]
    lines += [fmt.format(r.budget, r.proposer, f"{pct(r.mean)} +- {pct(r.std)}", f"{r.gain:+.2f}%", pct(r.val_mean),
                         f"{r.wall_mean:.1f}", f"{r.proxy_seconds_mean:.1f}", f"{r.llm_calls_mean:.1f}", _share(r),
                         r.duplicate_evaluations)
              for r in rows]
    return head + "\n".join(lines) + "\n\n" + references(facts) + "\n"


def _share(row: Row) -> str:
    return f"{100 * row.llm_share_mean:.0f}%" if row.llm_share_mean is not None else ""


def references(facts: TableFacts) -> str:
    return (f"random-sample average {pct(facts.random_sample_average)}; "
            f"optimum of the table {pct(facts.optimum)} ({gain(facts.optimum, facts):+.2f}%); "
            f"cell best by validation {pct(facts.best_by_validation)} ({gain(facts.best_by_validation, facts):+.2f}%)")


def summary_line(task: str, rows: list[Row]) -> str:
    budget = HEADLINE_BUDGET if any(r.budget == HEADLINE_BUDGET for r in rows) else rows[-1].budget
    parts = [f"{r.proposer} {pct(r.mean)} +- {pct(r.std)} ({r.gain:+.2f}% vs random-sample average)"
             for r in rows if r.budget == budget]
    return f"{task} budget {budget}: " + ", ".join(parts)


def section_key(task: str, proposers: list[str], budgets: list[int]) -> str:
    """The baselines have their own section; runs with other proposers one per (proposers, budgets), so a slow
    LLM run at one budget does not overwrite another budget's table."""
    if not set(proposers) - set(BASELINES):
        return f"search_nb201:{task}"
    return f"search_nb201:{task}:{'+'.join(proposers)}:b{'+'.join(map(str, budgets))}"


def doc_section(task: str, rows: list[Row], facts: TableFacts, seeds: int, info: RunInfo, proposers: list[str],
                llm: str, model: str | None, prior_budget: int = PRIOR_BUDGET) -> str:
    defaults = Settings()
    with_llm = bool(set(proposers) - set(BASELINES))
    title = "LLM proposer and portfolio against the baselines" if with_llm else "search baselines"
    lines = [
        f"## NAS-Bench-201 {title}: {task}",
        "",
        f"Written by `bench/search_nb201.py`. Each search runs as `agent search --task {task} --proposer P --budget B "
        f"--seed S` does (same proposers, tabular evaluator and search graph, recorded in memory), chooses its cell by "
        f"12-epoch validation accuracy, and reports that cell's final-report accuracy: {facts.final_source}. "
        f"Mean +- sample std over {seeds} seeds (0..{seeds - 1}), in percent; \"val acc\" is the mean search signal "
        f"(12-epoch validation accuracy) of the chosen cells. \"vs rand-sample avg\" is "
        f"100 (acc - acc_rand) / acc_rand, with acc_rand = {pct(facts.random_sample_average)} the mean final-report "
        f"accuracy of all cells (the random-sample average). Evolution: population {defaults.population}, "
        f"tournament {defaults.tournament}; its first {defaults.population} evaluations are its random initial "
        f"population, drawn with the same seeded generator as random search, so at budgets up to "
        f"{defaults.population} the two rows are identical.",
    ]
    if with_llm:
        lines += [
            "",
            f"LLM: `--llm {llm}`" + (f" `--model {model}`" if model else " (the offline Qwen2.5-Coder-0.5B-Instruct, "
                                     "grammar-constrained)") + ". `llm` proposes every candidate (up to 2 repairs per "
            "proposal, a mutation when it keeps repeating); `portfolio` (the default with an LLM) lets a Thompson-"
            "sampling bandit pick each proposal's operator among LLM from scratch, LLM edit of a tournament parent, "
            f"mutation of a tournament parent (the best of {Portfolio.TOURNAMENT} drawn from the {Portfolio.POPULATION} "
            "most recent ok candidates) "
            "and random, rewarding each by the share of earlier candidates its candidate beats (after 3 random "
            "warm-up proposals; the LLM operators join once 8 candidates have finished; an outcome counts 3 pseudo-observations; the LLM operators start from a Beta(1, 2) "
            "prior, the others from Beta(1, 1)); `portfolio-nollm` is "
            "the same bandit without the LLM operators. With its surrogate (the default, `--surrogate on`) the "
            "bandit only decides when an LLM operator is called: the model's proposal joins the pool, which the "
            f"surrogate (with synflow evidence on NAS-Bench-201) ranks, and one ranked above {LLM_STANDING:.0%} of the pool is "
            "evaluated at once; the synflow scores are read from bench/nb201_proxy_table.py's table (\"proxy s\": "
            "the probe's seconds for them). Both LLM proposers reflect every 10 evaluations. \"s / search\" "
            "is the wall time of one search (model loading included), \"LLM share\" the share of the portfolio's "
            "proposals made by its LLM operators, \"dup\" the evaluations spent on a cell already evaluated in the "
            "same search, over all seeds.",
        ]
    if set(proposers) & (set(SURROGATE) | {"portfolio-nollm"}):
        lines += [
            "",
            "The surrogate rows (docs/search.md, \"The surrogate\"): `default` is `agent search` with no proposer flag: "
            f"the portfolio without LLM operators, whose operators fill a pool of {defaults.pool_size} proposals "
            "(mutations, the whole neighbourhood of the 3 best cells, crossovers, random samples) from which a Gaussian "
            "process over the cells' encodings, with every proposal's synflow score as its evidence "
            "(`proxy_evidence = \"auto\"`, synflow on NAS-Bench-201), picks each evaluation by expected improvement. "
            "The scores are read from the table `bench/nb201_proxy_table.py` made with the search's model probe; "
            "\"proxy s\" is the probe's seconds for the cells a search scored, a cost beside the evaluations. "
            "`no-proxies` is the default with `--proxy-evidence off`. "
            f"`prior` adds `--prior`: a {prior_budget}-evaluation `default` run on {PRIOR_TASK[task]} (seed "
            f"{PRIOR_SEED} + S), recorded first. `portfolio-nollm` is the bandit alone (no LLM, no surrogate): the "
            "default before the surrogate. The `portfolio` row (the default with `--llm`) has synflow evidence too.",
        ]
    lines += [
        "",
        "| budget | proposer | final acc (%) | vs rand-sample avg | val acc (%) | s / search | proxy s | LLM calls | LLM share | dup |",
        "|---:|:---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {r.budget} | {r.proposer} | {pct(r.mean)} +- {pct(r.std)} | {r.gain:+.2f}% | {pct(r.val_mean)} | "
              f"{r.wall_mean:.1f} | {r.proxy_seconds_mean:.1f} | {r.llm_calls_mean:.1f} | {_share(r)} | "
              f"{r.duplicate_evaluations} |"
              for r in rows]
    lines += [
        "",
        f"Reference: {references(facts)}.",
        "",
        *info.bullets(),
        f"- seeds: 0..{seeds - 1}; wall time: {info.wall_seconds} s",
    ]
    return "\n".join(lines)


#############################################
#                   Main                    #
#############################################

def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    args = parse_args(argv)
    benchmark_dir = args.benchmark_dir.expanduser().resolve()
    TableProxyEvidence.folder = args.proxy_tables
    if not (benchmark_dir / SIGNAL_TABLE_NAME).is_file():
        print(f"search_nb201: no NAS-Bench-201 tables: looked for {benchmark_dir / SIGNAL_TABLE_NAME}.\n"
              f"Pass --benchmark-dir with the folder that holds {SIGNAL_TABLE_NAME} (and optionally "
              "nb201_<dataset>_200epoch_test.csv); docs/training.md (NAS-Bench-201 tables) says where to get them.", file=sys.stderr)
        return 2
    try:
        facts = table_facts(TabularBenchmark(resolve_task(args.task, benchmark_dir=benchmark_dir)))
        results = run_all(args.task, benchmark_dir, args.budgets, args.seeds, args.proposers, args.llm, args.model,
                          args.prior_budget)
    except ArchAgentError as exc:
        print(f"search_nb201: {exc}", file=sys.stderr)
        return 2
    rows = aggregate(results, facts)
    info = run_info(benchmark_dir, started)

    print(text_table(args.task, rows, facts, args.seeds))
    if args.json is not None:
        raw = {"task": args.task, "table": asdict(facts), "run": asdict(info), "rows": [asdict(r) for r in rows],
               "results": [asdict(r) for r in results]}
        args.json.write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    if not args.no_write:
        key = section_key(args.task, args.proposers, args.budgets)
        write_doc(key, doc_section(args.task, rows, facts, args.seeds, info, args.proposers, args.llm, args.model,
                                   args.prior_budget))
        print(f"updated {DOC.relative_to(REPO_ROOT)} (section {key}); wall time {info.wall_seconds} s")
    print(summary_line(args.task, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
