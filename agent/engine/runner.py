"""Set up and run one search: settings -> task, space, proposer, pool, run record -> graph.

After the graph stops, the best candidate by validation accuracy gets its final
evaluation (test split; not counted in the budget) and the run gets its summary.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from datetime import datetime, timezone

from agent.config import Settings
from agent.store import History
from agent.store.recorder import Recorder
from agent.proposers import Proposer, make_proposer
from agent.engine.graph import SEARCH_GRAPH, initial_state
from agent.engine.state import SearchContext, SearchState
from agent.summaries import BestCandidate, SearchSummary
from evaluator.errors import UserInputError
from evaluator.pool import Job
from evaluator.records import FINAL_STATUSES, Candidate, Evaluation, Purpose, Run, RunStatus, Status
from evaluator.spaces import SearchSpace, get_space
from evaluator.tabular import TabularBenchmark, TabularPool
from evaluator.tasks import Task, resolve_task

ResultCallback = Callable[[Candidate, Evaluation, SearchState], None]


def new_run_id() -> str:
    return f"{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def prepare(settings: Settings) -> tuple[Task, SearchSpace, TabularBenchmark]:
    """Resolve the task, its space and its evaluator from settings (errors name the fix)."""
    if settings.task is None:
        raise UserInputError("no task given", hint="pass --task (for example --task nb201-cifar10); `agent tasks` lists them")
    task = resolve_task(settings.task, benchmark_dir=settings.benchmark_dir,
                        signal_table=settings.signal_table, final_table=settings.final_table)
    space = get_space(settings.space or task.default_space)
    if space.name != task.default_space:
        raise UserInputError(
            f"task {task.name} evaluates {task.default_space} cells from a table; space {space.name!r} cannot be used with it",
            hint=f"drop --space or pass --space {task.default_space}",
        )
    return task, space, TabularBenchmark(task)


def _proposer_from(settings: Settings, space: SearchSpace) -> Proposer:
    if settings.proposer != "evolution":
        return make_proposer(settings.proposer, space, settings.seed)
    if settings.tournament > settings.population:
        raise UserInputError(
            f"tournament ({settings.tournament}) is larger than population ({settings.population})",
            hint="choose a tournament size between 1 and the population size (--tournament, --population)",
        )
    return make_proposer("evolution", space, settings.seed, population=settings.population, tournament=settings.tournament)


def run_search(
    settings: Settings,
    *,
    recorder: Recorder | None = None,
    proposer: Proposer | None = None,
    on_start: Callable[[Run, list[str]], None] | None = None,
    on_result: ResultCallback | None = None,
) -> SearchSummary:
    """Run a search as configured; record it in ``recorder`` (default: the home's history).

    ``proposer`` replaces the one named in settings (a proposer of your own, for example).
    """
    started = time.monotonic()
    task, space, benchmark = prepare(settings)
    pool = TabularPool(benchmark)
    if proposer is None:
        proposer = _proposer_from(settings, space)
    budget = settings.budget or task.default_budget
    home = settings.home
    if recorder is None:
        recorder = History(home, lock_timeout=settings.lock_timeout)
    run = Run(
        run_id=new_run_id(), task=task.name, space=space.name, proposer=proposer.name, seed=settings.seed,
        budget=budget, config=settings.model_dump(mode="json") | {"signal_table": str(task.signal_table),
                                                                  "final_table": str(task.final_table) if task.final_table else None},
    )
    recorder.create_run(run)
    if on_start is not None:
        on_start(run, benchmark.warnings)
    ctx = SearchContext(
        run=run, space=space, proposer=proposer, pool=pool, recorder=recorder, budget=budget,
        deadline=None if settings.minutes is None else started + 60.0 * settings.minutes,
        max_attempts=20 * budget + 100, on_result=on_result,
    )
    try:
        final = SEARCH_GRAPH.invoke(initial_state(), {"recursion_limit": 10 * ctx.max_attempts + 100}, context=ctx)
        best = _final_report(ctx, final)
        summary = _summary(ctx, final, best, started, home=str(home) if isinstance(recorder, History) else None,
                           warnings=benchmark.warnings)
        recorder.finish_run(run.run_id, RunStatus.DONE, summary.to_json())
        return summary
    except KeyboardInterrupt:
        recorder.finish_run(run.run_id, RunStatus.INTERRUPTED, None)
        raise
    except BaseException:
        recorder.finish_run(run.run_id, RunStatus.FAILED, None)
        raise
    finally:
        pool.close()


def _final_report(ctx: SearchContext, state: SearchState) -> BestCandidate | None:
    """Evaluate the best candidate by validation on the test split (not counted in the budget)."""
    if not state["top"]:
        return None
    best = state["top"][0]
    ctx.pool.submit(Job(candidate_id=best["candidate_id"], spec=best["spec"], purpose=Purpose.FINAL))
    evaluation = None
    while evaluation is None:  # the graph has stopped: the final job is the only one in flight
        for event in ctx.pool.events(timeout=None):
            if event.kind == "finished" and event.evaluation is not None and event.evaluation.purpose is Purpose.FINAL:
                evaluation = event.evaluation
    ctx.recorder.add_evaluations(ctx.run.run_id, [evaluation], update_status=False)
    return BestCandidate(
        candidate_id=best["candidate_id"], spec=best["spec"], val_accuracy=best["val_accuracy"],
        test_accuracy=evaluation.test_accuracy,
        test_source=evaluation.source if evaluation.status is Status.OK else evaluation.error,
        **ctx.space.extra_fields(best["spec"]),
    )


def _summary(ctx: SearchContext, state: SearchState, best: BestCandidate | None, started: float, *,
             home: str | None, warnings: list[str]) -> SearchSummary:
    counts = {s.value: state["counts"].get(s.value, 0) for s in FINAL_STATUSES}
    top = [{"candidate_id": t["candidate_id"], "val_accuracy": t["val_accuracy"], **ctx.space.extra_fields(t["spec"])}
           for t in state["top"]]
    return SearchSummary(
        run_id=ctx.run.run_id, status=RunStatus.DONE.value, task=ctx.run.task, space=ctx.space.name, proposer=ctx.proposer.name,
        seed=ctx.run.seed, budget=ctx.budget, evaluations=state["evaluations"], counts=counts,
        duplicates_skipped=state["duplicates"], proposals=state["attempts"], stop_reason=state["stop_reason"],
        best=best, top=top, wall_seconds=round(time.monotonic() - started, 3), home=home, warnings=warnings,
    )


def evaluate_one(settings: Settings, spec: object, *, final: bool = False) -> dict:
    """Evaluate one user-given spec exactly as a search would, and record it as a run of one.

    The spec is validated first: bad input raises SpecError and nothing is recorded. With
    ``final`` the test split is read too (a final evaluation, as for a search's choice).
    """
    task, space, benchmark = prepare(settings)
    spec = space.validate(spec)
    history = History(settings.home, lock_timeout=settings.lock_timeout)
    run = Run(run_id=new_run_id(), task=task.name, space=space.name, proposer="manual", seed=settings.seed,
              budget=1, config=settings.model_dump(mode="json"))
    history.create_run(run)
    try:
        candidate = Candidate(candidate_id=f"{run.run_id}-c0000", run_id=run.run_id, seq=0, space=space.name, spec=spec,
                              canonical_key=space.canonical_key(spec), proposer="manual", rationale="given by the user")
        history.add_candidates([candidate])
        evaluation = benchmark.evaluate(Job(candidate_id=candidate.candidate_id, spec=spec))
        history.add_evaluations(run.run_id, [evaluation])
        out = {"run_id": run.run_id, "candidate_id": candidate.candidate_id, "task": task.name,
               "status": evaluation.status.value, "error": evaluation.error, "val_accuracy": evaluation.val_accuracy,
               "fidelity": evaluation.fidelity, "spec": spec, **space.extra_fields(spec)}
        if final and evaluation.status is Status.OK:
            report = benchmark.evaluate(Job(candidate_id=candidate.candidate_id, spec=spec, purpose=Purpose.FINAL))
            history.add_evaluations(run.run_id, [report], update_status=False)
            out |= {"test_accuracy": report.test_accuracy, "test_source": report.source}
        history.finish_run(run.run_id, RunStatus.DONE, out)
        return out
    except BaseException:
        history.finish_run(run.run_id, RunStatus.FAILED, None)
        raise
