"""`agent search`: a bounded search that ends with the best candidates and a final report."""

from __future__ import annotations

import argparse

from agent.commands.options import (TRAINING_FLAGS, add_task_data, comma_ints, comma_list, console as make_console,
                                    non_negative_int, positive_float, positive_int, print_json, proxy_list, settings_flags)
from agent.config import EVIDENCE_PROXIES
from evaluator.measure import PROXY_NAMES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_task_data(parser)
    parser.add_argument("--proposer", choices=["random", "evolution", "llm", "portfolio"],
                        help="how candidates are proposed (default: portfolio, with LLM operators when --llm is given; "
                             "random and evolution are the baselines)")
    parser.add_argument("--llm", choices=["local", "openai"],
                        help="LLM backend of the llm and portfolio proposers (default local: the offline model; "
                             "openai: OPENAI_BASE_URL / OPENAI_API_KEY)")
    parser.add_argument("--model", help="LLM model: a GGUF file, model folder or hub id (local), a model name (openai)")
    parser.add_argument("--budget", type=positive_int, help="evaluations to spend (default: the task's, 100 for nb201)")
    parser.add_argument("--minutes", type=positive_float, help="wall-clock limit; the search stops cleanly when it is reached")
    parser.add_argument("--seed", type=non_negative_int, help="random seed; the same seed gives the same search (default 0)")
    parser.add_argument("--max-llm-cost", dest="max_llm_cost", type=positive_float, metavar="DOLLARS",
                        help="stop the search once its LLM calls cost this much (needs llm_price_in/out for openai)")
    parser.add_argument("--reflect-every", dest="reflect_every", type=non_negative_int, metavar="K",
                        help="LLM proposers: distil insights from the history every K evaluations (default 10; 0: never)")
    parser.add_argument("--direction", dest="directions", action="append", metavar="TEXT",
                        help="a direction for the LLM, shown in every prompt (repeatable), e.g. 'avoid pooling'")
    parser.add_argument("--portfolio-cost", dest="portfolio_cost", choices=["evaluation", "second", "dollar"],
                        help="portfolio: measure each operator's improvement per evaluation (default), second or dollar")
    stop = parser.add_argument_group("early stopping (training tasks)")
    stop.add_argument("--early-stop", dest="early_stop", choices=["auto", "off", "forecast", "asha", "both"],
                      help="forecast: forecast each candidate's final accuracy after every epoch and stop it when it "
                           "will almost surely not beat the best finished one; asha: asynchronous successive halving "
                           "(candidates stop at --rungs, the best continue from their checkpoint); both; off; auto "
                           "(default): asha with the default proposer (the surrogate-guided portfolio), off with "
                           "--proposer random|evolution|llm or --surrogate off")
    stop.add_argument("--early-stop-threshold", dest="early_stop_threshold", type=positive_float, metavar="P",
                      help="forecast: stop when P(beat the incumbent) < P (default 0.05)")
    stop.add_argument("--audit-fraction", dest="audit_fraction", type=float, metavar="F",
                      help="forecast: share of would-be-stopped candidates that train on to measure the forecast's "
                           "error (default 0.1)")
    stop.add_argument("--rungs", type=comma_ints, metavar="E1,E2",
                      help="asha: epochs at which candidates are compared (default: epochs / eta^k, e.g. 2,5 for 15 epochs)")
    stop.add_argument("--reduction-factor", dest="reduction_factor", type=positive_int, metavar="ETA",
                      help="asha: the top 1/ETA of each rung continue (default 3)")
    goal = parser.add_argument_group("objectives and constraints")
    goal.add_argument("--objectives", type=comma_list, metavar="LIST",
                      help="accuracy (maximised) and optionally latency, params, flops (minimised), e.g. "
                           "accuracy,latency: the answer is then the Pareto front (default accuracy)")
    goal.add_argument("--max-latency-ms", dest="max_latency_ms", type=positive_float, metavar="MS",
                      help="reject candidates whose batch-1 latency, measured before training, exceeds MS")
    goal.add_argument("--max-params", dest="max_params", type=positive_int, metavar="N",
                      help="reject candidates with more than N parameters before training")
    goal.add_argument("--max-flops", dest="max_flops", type=positive_int, metavar="N",
                      help="reject candidates with more than N FLOPs (multiply-accumulates per image) before training")
    goal.add_argument("--proxies", type=proxy_list, metavar="LIST",
                      help="zero-cost proxies each worker scores before training: all (default), none, or some of "
                           + ",".join(PROXY_NAMES))
    goal.add_argument("--screen", choices=PROXY_NAMES,
                      help="propose --screen-factor times as many candidates and train only the best by this proxy")
    goal.add_argument("--screen-factor", dest="screen_factor", type=positive_int, metavar="K",
                      help="screening: proposals per candidate trained (default 4)")
    parser.add_argument("--llm-after", dest="llm_after", type=non_negative_int, metavar="N",
                        help="portfolio: let the LLM propose once N candidates have finished (default 8; 0: right "
                             "after the 3 random warm-up proposals, for a strong model)")
    guide = parser.add_argument_group("the portfolio's surrogate")
    guide.add_argument("--surrogate", choices=["on", "off"],
                       help="on (default): the operators fill a pool of proposals and a surrogate model of the run's "
                            "results picks which are evaluated; off: every proposal is evaluated as made")
    guide.add_argument("--pool-size", dest="pool_size", type=positive_int, metavar="N",
                       help="proposals the surrogate chooses from at each step (default 256)")
    guide.add_argument("--proxy-evidence", dest="proxy_evidence", choices=EVIDENCE_PROXIES,
                       help="score every pool proposal with this zero-cost proxy before choosing (the seconds are "
                            "reported); auto (default): the proxy measured to help on the space (NAS-Bench-201: "
                            "synflow, about 0.08 s a cell on one core; others: none); off: no proxy")
    guide.add_argument("--prior", dest="priors", action="append", metavar="RUN",
                       help="warm-start the surrogate from an earlier run over the same space, any task "
                            "(repeatable), or 'auto' for every such run in this history")
    parser.add_argument("--population", type=positive_int, help="evolution: population size (default 20)")
    parser.add_argument("--tournament", type=positive_int, help="evolution: tournament sample size (default 5)")
    again = parser.add_argument_group("rechecks (training tasks)")
    again.add_argument("--recheck-every", dest="recheck_every", type=non_negative_int, metavar="K",
                       help="every K evaluations, train the best candidates again with other seeds (validation "
                            "only, not counted in the budget); the final choice is the best mean (default 0: never; "
                            "agent loop: 10)")
    again.add_argument("--recheck-top", dest="recheck_top", type=positive_int, metavar="N",
                       help="rechecks: how many of the best (default 3)")
    again.add_argument("--recheck-seeds", dest="recheck_seeds", type=positive_int, metavar="S",
                       help="rechecks: extra seeds per candidate (default 2)")
    parser.add_argument("--max-device-seconds", dest="max_device_seconds", type=positive_float, metavar="S",
                        help="stop once the run's evaluations have used S seconds of device (training) time")
    parser.add_argument("--resume", metavar="RUN",
                        help="continue a run that stopped (crashed, interrupted, or done with budget to spare): "
                             "its own settings, with new limits (--budget, --minutes, ...) if given")


SETTING_FLAGS = (
    "task", "space", "space_file", "tables", "benchmark_dir", "signal_table", "final_table", "proposer", "budget", "minutes", "seed",
    "population", "tournament", "llm", "model", "max_llm_cost", "max_device_seconds", "reflect_every", "directions",
    "portfolio_cost", "llm_after", "surrogate", "pool_size", "proxy_evidence", "priors", "early_stop", "early_stop_threshold", "audit_fraction", "rungs", "reduction_factor",
    "objectives", "max_latency_ms", "max_params", "max_flops", "proxies", "screen", "screen_factor", "recheck_every",
    "recheck_top", "recheck_seeds", *TRAINING_FLAGS,
)


def search_settings(args: argparse.Namespace, until=None):
    """The settings of a new run, or of the run ``--resume`` continues (its own, new limits on top)."""
    from agent.config import load_settings

    flags = settings_flags(args, *SETTING_FLAGS)
    settings = load_settings(flags).settings
    if args.resume is None:
        return settings
    from agent.engine.resume import resume_settings
    from agent.store import History

    stored = History(settings.home, lock_timeout=settings.lock_timeout).get_run(args.resume)
    given = {k: v for k, v in flags.items() if v is not None and k != "home"}
    if until is not None:
        given.pop("minutes", None)
    return resume_settings(settings, given, stored["config"] or {})


def run(args: argparse.Namespace, until=None, report: bool = False) -> int:
    from agent.progress import SearchProgress
    from agent.engine.runner import run_search

    settings = search_settings(args, until)
    progress = SearchProgress.for_stderr()
    try:
        summary = run_search(settings, resume=args.resume, until=until, on_start=progress.start,
                             on_result=progress.result, on_event=progress.event)
    finally:
        progress.stop()
    if args.json:
        print_json(summary.to_json())
    else:
        render_summary(summary)
    if report:
        _morning_report(settings, summary.run_id)
    return 0


def _morning_report(settings, run_id: str) -> None:
    """The run's HTML report, written when the run ends (on stderr: --json keeps stdout one object)."""
    from agent.reporting import write_report
    from agent.store import History
    from evaluator.errors import ArchAgentError

    err = make_console(stderr=True)
    try:
        out = write_report(History(settings.home, lock_timeout=settings.lock_timeout), run_id)
    except ArchAgentError as exc:  # matplotlib missing, a folder that cannot be written: the run itself is done
        err.print(f"no report written: {exc.message}" + (f" ({exc.hint})" if exc.hint else ""), highlight=False)
        return
    err.print(f"report: {out['html']}", highlight=False)


def render_summary(summary) -> None:
    from rich.markup import escape
    from rich.table import Table

    from agent.display import final_report_line, outcome_line, search_lines

    console = make_console()
    table = Table(title=f"best candidates by validation accuracy (run {summary.run_id})", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("candidate")
    table.add_column("val acc", justify="right")
    table.add_column("params", justify="right")
    table.add_column("arch / spec", overflow="fold")
    for i, row in enumerate(summary.top, start=1):
        params = f"{row['params']:,}" if row.get("params") else ""
        table.add_row(str(i), row["candidate_id"], f"{row['val_accuracy']:.4f}", params,
                      row.get("arch") or row.get("key") or row.get("summary", ""))
    console.print(table)
    s = summary.to_json()
    for line in [outcome_line(s), *search_lines(s)]:
        console.print(line, highlight=False)
    best = summary.best
    if best is None:
        console.print("[red]no candidate finished ok: there is no final report[/]")
        return
    bold = {"final report": "[bold]{}[/]"}
    console.print(final_report_line({k: escape(v) if isinstance(v, str) else v for k, v in s["best"].items()},
                                    lambda text: bold.get(text, "[bold green]{}[/]").format(text)), highlight=False)
    extra = getattr(best, "arch", None)
    if extra:
        console.print(f"arch: {extra}", highlight=False)
    if getattr(best, "key", None) or getattr(best, "summary", None):
        console.print(f"choices: {getattr(best, 'summary', None) or best.spec}"
                      + (f" (table key {best.key})" if getattr(best, "key", None) else ""), highlight=False)
    console.print(f"details: agent show {best.candidate_id}", highlight=False)
