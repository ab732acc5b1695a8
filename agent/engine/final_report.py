"""The final report of a search: the leader (the best candidate by validation accuracy, averaged
over its seeds where rechecks trained it again) evaluated on the test split, not counted in the
budget: a table lookup on a tabular task, a retraining from scratch with each of the final seeds
on a training task (mean and std).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

from agent.engine.state import SearchContext, SearchState
from agent.summaries import BestCandidate
from evaluator.pools.base import EvaluationPool, Job, PoolEvent
from evaluator.records import Evaluation, Purpose, Status


def final_evaluations(pool: EvaluationPool, candidate_id: str, spec: dict, seeds: tuple[int, ...],
                      on_event: Callable[[PoolEvent], None] | None = None) -> list[Evaluation]:
    """Evaluate one candidate on the test split once per seed, as many at once as the pool allows."""
    pending, done = list(seeds), []
    while len(done) < len(seeds):
        while pending and pool.free_slots() > 0:
            pool.submit(Job(candidate_id=candidate_id, spec=spec, purpose=Purpose.FINAL, seed=pending.pop(0)))
        for event in pool.events(timeout=None):
            if on_event is not None:
                on_event(event)
            if event.kind == "finished" and event.evaluation is not None and event.evaluation.purpose is Purpose.FINAL:
                done.append(event.evaluation)
    return done


def final_report(ctx: SearchContext, state: SearchState, seeds: tuple[int, ...]) -> BestCandidate | None:
    """Evaluate the best candidate by validation on the test split (not counted in the budget)."""
    if not state["top"]:
        return None
    best = leader(state)
    if ctx.crash_points is not None:
        ctx.crash_points.reached("final", "before")
    # A resumed run that had already recorded its final report (it stopped right after) keeps it.
    evaluations = ctx.recorder.final_evaluations(best["candidate_id"])
    if len(evaluations) < len(seeds):
        evaluations = final_evaluations(ctx.pool, best["candidate_id"], best["spec"], seeds, ctx.on_event)
        ctx.recorder.add_evaluations(ctx.run.run_id, evaluations, update_status=False)
    if ctx.crash_points is not None:
        ctx.crash_points.reached("final", "after")
    ok = [e for e in evaluations if e.status is Status.OK and e.test_accuracy is not None]
    accs = [e.test_accuracy for e in ok]
    trained = len(seeds) > 1 or any("seed" in e.metrics for e in evaluations)
    if ok:
        source = ok[0].source
        if trained:
            source = (f"test split, mean of {len(ok)} retraining(s) from scratch (seeds "
                      f"{', '.join(str(e.metrics['seed']) for e in ok)}), {source}")
        if len(ok) < len(evaluations):
            source += f"; {len(evaluations) - len(ok)} of {len(evaluations)} final runs failed: {_first_error(evaluations)}"
    else:
        source = _first_error(evaluations)
    checked = validation_seeds(state, best)
    return BestCandidate(
        candidate_id=best["candidate_id"], spec=best["spec"], val_accuracy=best["val_accuracy"],
        val_accuracy_mean=statistics.fmean(checked) if len(checked) > 1 else None,
        val_seeds=len(checked) if len(checked) > 1 else None,
        test_accuracy=statistics.fmean(accs) if accs else None, test_source=source,
        test_accuracy_std=(statistics.stdev(accs) if len(accs) > 1 else 0.0) if trained and accs else None,
        seeds=[int(e.metrics["seed"]) for e in ok] if trained else None,
        **ctx.space.extra_fields(best["spec"]),
    )


def validation_seeds(state: SearchState, top: dict) -> list[float]:
    """A top candidate's validation accuracies: its search evaluation and every ok recheck."""
    return [top["val_accuracy"], *(v for v in state.get("rechecks", {}).get(top["candidate_id"], []) if v is not None)]


def leader(state: SearchState) -> dict:
    """The candidate the final report retrains: the best by validation accuracy, averaged over
    the seeds it has when rechecks trained some leaders again (a single run is near the noise floor)."""
    if not state.get("rechecks"):
        return state["top"][0]
    return max(state["top"], key=lambda t: (statistics.fmean(validation_seeds(state, t)), -t["seq"]))


def _first_error(evaluations: list[Evaluation]) -> str:
    return next((e.error for e in evaluations if e.error),
                evaluations[0].source if evaluations and evaluations[0].source else "no test accuracy")
