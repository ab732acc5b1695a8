"""Run one search: settings -> setup -> run record -> the search graph -> final report -> summary.

``run_search`` is the one entry point (the CLI, the Python API, chat, loops and bench/ all call
it). It sets the run up (``agent.engine.setup``), records it (or claims a stopped one to resume:
``agent.engine.resume``), builds the proposer (``agent.engine.llm_wiring``), runs the langgraph
search graph (``agent.engine.graph``) to its budget or deadline, evaluates the leader on the test
split (``agent.engine.final_report``) and records the summary (``agent.engine.summary``). A run
that is interrupted or fails is recorded so, and can be resumed.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from datetime import datetime, timezone

from agent.config import Settings
from agent.engine.crash import CrashPoints
from agent.engine.final_report import final_report
from agent.engine.graph import SEARCH_GRAPH, initial_state
from agent.engine.guidance import surrogate_guidance
from agent.engine.llm_wiring import search_proposer
from agent.engine.proposing import Proposing
from agent.engine.resume import check_same_files, restore_state, run_deadline
from agent.engine.setup import Setup, early_stopping, prepare, screening
from agent.engine.state import Recheck, SearchContext, SearchState
from agent.engine.summary import search_summary
from agent.proposers import Proposer
from agent.records import Run, RunStatus
from agent.store import History, HistoryError
from agent.store.database import interrupted
from agent.store.recorder import Recorder
from agent.summaries import SearchSummary
from evaluator.objectives import Constraints, Objectives
from evaluator.pools.base import PoolEvent
from evaluator.records import Candidate, Evaluation


ResultCallback = Callable[[Candidate, Evaluation, SearchState], None]


def new_run_id() -> str:
    return f"{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def _abandon(proposing: Proposing, stopped_by: BaseException) -> None:
    """The search stopped or failed: an LLM call under way is abandoned (a daemon thread), and an
    error of the proposal thread is told beside the one that stopped the search."""
    try:
        proposing.close(timeout=0)
    except BaseException as exc:  # noqa: BLE001 - the search's own error is the one raised
        stopped_by.add_note(f"the proposal thread failed too: {type(exc).__name__}: {exc}")


def run_search(
    settings: Settings,
    *,
    resume: str | None = None,
    until: datetime | None = None,
    recorder: Recorder | None = None,
    proposer: Proposer | None = None,
    on_start: Callable[[Run, list[str]], None] | None = None,
    on_result: ResultCallback | None = None,
    on_event: Callable[[PoolEvent], None] | None = None,
    test_inject: dict[str, str] | None = None,
) -> SearchSummary:
    """Run a search as configured; record it in ``recorder`` (default: the home's history).

    ``resume`` continues a run of the history instead of starting one (``settings`` from
    :func:`resume_settings`): what it recorded is replayed into the search state, candidates
    that were in flight are evaluated again, and it goes on to its budget. ``until`` is an
    absolute wall-clock deadline (UTC); without it ``settings.minutes`` counts from now, and a
    resumed run keeps the deadline it recorded.
    ``proposer`` replaces the one named in settings (a proposer of your own, for example).
    ``on_event`` sees every pool event, the final retraining's included (live progress).
    ``test_inject`` maps candidate-id suffixes (``"c0003"``) to code a worker runs where
    candidate code would run: a test-only path for injecting faults.
    """
    started = time.monotonic()
    crash_points = CrashPoints.from_env()
    if crash_points is not None:
        crash_points.arm()
    if resume is not None:
        recorder = recorder or History(settings.home, lock_timeout=settings.lock_timeout)
        run_id = recorder.resolve_run_id(resume)
    else:
        run_id = new_run_id()
    setup = prepare(settings, run_id, test_inject)
    try:
        return _run(settings, setup, run_id, started, recorder, proposer, on_start, on_result, on_event,
                    resume=resume is not None, until=until, crash_points=crash_points)
    finally:
        setup.pool.close()


def _run(settings, setup: Setup, run_id, started, recorder, proposer, on_start, on_result, on_event, *,
         resume: bool = False, until: datetime | None = None, crash_points: CrashPoints | None = None) -> SearchSummary:
    task, space = setup.task, setup.space
    budget = settings.budget or task.default_budget
    if recorder is None:
        recorder = History(settings.home, lock_timeout=settings.lock_timeout)
    stored = recorder.get_run(run_id) if resume else None
    if stored is not None:
        check_same_files(stored.get("config") or {}, setup.config)
    deadline = run_deadline(settings, until, stored["config"] if stored else None)
    objectives = Objectives.parse(settings.objectives if settings.objectives is not None else setup.objectives)
    constraints = Constraints(max_latency_ms=settings.max_latency_ms, max_params=settings.max_params,
                              max_flops=settings.max_flops)
    resumes = recorder.count_events(run_id, "run_resumed") + 1 if resume else 0
    # A resumed run's proposer starts from another seed: replaying the same draws would only
    # propose what the run already has.
    proposer_settings = settings.model_copy(update={"seed": settings.seed + 7919 * resumes}) if resumes else settings
    llm = guidance = None
    if proposer is None:
        # checks --prior / --proxy-evidence before anything is recorded; its probe starts on first use
        guidance = surrogate_guidance(settings, setup, recorder, objectives, current_run=run_id if resume else None)
        proposer, llm = search_proposer(proposer_settings, space, task, run_id, recorder, objectives, constraints,
                                        guidance=guidance)
    proposer.objectives = objectives
    # refuses a table task before anything is recorded
    early_stop, halving, early_stop_mode = early_stopping(settings, setup, run_id, guided=guidance is not None)
    screen = screening(settings, setup, objectives, constraints)
    config = settings.model_dump(mode="json") | setup.config | {"deadline": deadline.isoformat() if deadline else None,
                                                                "space_label": space.label,
                                                                "early_stop": early_stop_mode}  # auto resolved
    if stored is not None:
        claim = recorder.claim_run(run_id, budget=budget, config_update=config)
        run = Run(run_id=run_id, task=stored["task"], space=stored["space"], proposer=stored["proposer"],
                  seed=stored["seed"], budget=budget, config=stored["config"] | config,
                  created=stored["created"].replace(tzinfo=timezone.utc))
        warnings = setup.warnings + [f"resumed (resume {claim['resumes']}, the run was {claim['previous_status']}); "
                                     f"{len(claim['requeued'])} candidate(s) in flight then are evaluated again"]
    else:
        run = Run(run_id=run_id, task=task.name, space=space.name, proposer=proposer.name, seed=settings.seed,
                  budget=budget, config=config)
        recorder.create_run(run)
        warnings = setup.warnings
    if on_start is not None:
        on_start(run, warnings)
    # Proposals are made beside the pool's jobs when it runs them in the background (training,
    # Ray), up to a pool's worth ahead; in turn with the evaluations where it computes them (tables).
    proposing = Proposing(proposer, background=setup.pool.background, lookahead=setup.pool.capacity)
    ctx = SearchContext(
        run=run, space=space, proposer=proposer, pool=setup.pool, recorder=recorder, budget=budget,
        deadline=None if deadline is None else time.monotonic() + (deadline - datetime.now(timezone.utc)).total_seconds(),
        max_attempts=20 * budget + 100, on_result=on_result, on_event=on_event,
        reflector=llm.reflector if llm else None, llm_spend=llm.spend if llm else None,
        max_llm_cost=settings.max_llm_cost if llm else None,
        epochs=setup.pool.epochs,
        early_stop=early_stop, halving=halving, screen=screen, objectives=objectives,
        max_device_seconds=settings.max_device_seconds, crash_points=crash_points,
        snapshot_every=settings.snapshot_every, snapshots_kept=settings.snapshots_kept,
        recheck=Recheck(settings.recheck_every, settings.recheck_top, settings.recheck_seeds)
        if settings.recheck_every and setup.pool.seeded else None,
        proposing=proposing, guidance=guidance,
    )
    if screen is not None and screen.proxy:
        ctx.max_attempts *= screen.factor
    try:
        state = restore_state(ctx, recorder) if stored is not None else initial_state()
        ctx.max_attempts += state["attempts"]
        final = SEARCH_GRAPH.invoke(state, {"recursion_limit": 20 * ctx.max_attempts + 100}, context=ctx)
        # a proposal still being made (a limit stopped the search) is dropped; a reflection or an
        # observation that failed in the proposal thread fails the run here
        proposing.close()
        best = final_report(ctx, final, setup.final_seeds)
        summary = search_summary(ctx, final, best, started, warnings=warnings)
        recorder.finish_run(run.run_id, RunStatus.DONE, summary.to_json())
        try:  # a safe point: the run is whole
            recorder.checkpoint(f"{run.run_id}-done", settings.snapshots_kept)
        except HistoryError as exc:  # the run is recorded; say why no copy of it was kept
            summary.warnings.append(f"no snapshot of the history was taken: {exc}")
        return summary
    except KeyboardInterrupt as exc:
        _abandon(proposing, exc)
        recorder.finish_run(run.run_id, RunStatus.INTERRUPTED, None)
        raise
    except BaseException as exc:
        _abandon(proposing, exc)
        if not interrupted(exc):
            recorder.finish_run(run.run_id, RunStatus.FAILED, None)
            raise
        # a signal DuckDB noticed first comes back as its "Query interrupted": a stop, not a failure
        recorder.finish_run(run.run_id, RunStatus.INTERRUPTED, None)
        raise KeyboardInterrupt() from exc
    finally:
        if screen is not None:
            screen.probe.close()
        if guidance is not None:
            guidance.close()
