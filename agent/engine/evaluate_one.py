"""``agent eval``: evaluate one user-given spec exactly as a search would, and record it as a run of one."""

from __future__ import annotations

import statistics

from agent.config import Settings
from agent.engine.final_report import final_evaluations
from agent.engine.runner import new_run_id
from agent.engine.setup import Setup, prepare
from agent.records import Run, RunStatus
from agent.store import History
from evaluator.pools.base import Job
from evaluator.records import Candidate, Status


def evaluate_one(settings: Settings, spec: object, *, final: bool = False) -> dict:
    """Evaluate one user-given spec exactly as a search would, and record it as a run of one.

    The spec is validated first: bad input raises SpecError and nothing is recorded. With
    ``final`` the test split is read too (a final evaluation, as for a search's choice).
    """
    run_id = new_run_id()
    setup = prepare(settings, run_id)
    try:
        spec = setup.space.validate(spec)
        history = History(settings.home, lock_timeout=settings.lock_timeout)
        run = Run(run_id=run_id, task=setup.task.name, space=setup.space.name, proposer="manual", seed=settings.seed,
                  budget=1, config=settings.model_dump(mode="json") | setup.config)
        history.create_run(run)
        try:
            out = _evaluate_recorded(history, setup, run, spec, final)
            history.finish_run(run.run_id, RunStatus.DONE, out)
            return out
        except BaseException:
            history.finish_run(run.run_id, RunStatus.FAILED, None)
            raise
    finally:
        setup.pool.close()


def _evaluate_recorded(history: History, setup: Setup, run: Run, spec: dict, final: bool) -> dict:
    space = setup.space
    candidate = Candidate(candidate_id=f"{run.run_id}-c0000", run_id=run.run_id, seq=0, space=space.name, spec=spec,
                          canonical_key=space.canonical_key(spec), proposer="manual", rationale="given by the user",
                          status=Status.RUNNING)
    history.add_candidates([candidate])
    setup.pool.submit(Job(candidate_id=candidate.candidate_id, spec=spec))
    evaluation = None
    while evaluation is None:
        evaluation = next((e.evaluation for e in setup.pool.events(timeout=None)
                           if e.kind == "finished" and e.evaluation is not None), None)
    history.add_evaluations(run.run_id, [evaluation])
    out = {"run_id": run.run_id, "candidate_id": candidate.candidate_id, "task": setup.task.name,
           "status": evaluation.status.value, "error": evaluation.error, "val_accuracy": evaluation.val_accuracy,
           "fidelity": evaluation.fidelity, "curve": [p.model_dump() for p in evaluation.curve], "spec": spec,
           "params": evaluation.metrics.get("params"), "sandbox": evaluation.metrics.get("sandbox"),
           **space.extra_fields(spec)}
    if final and evaluation.status is Status.OK:
        reports = final_evaluations(setup.pool, candidate.candidate_id, spec, setup.final_seeds)
        history.add_evaluations(run.run_id, reports, update_status=False)
        accs = [r.test_accuracy for r in reports if r.status is Status.OK and r.test_accuracy is not None]
        out |= {"test_accuracy": statistics.fmean(accs) if accs else None, "test_source": reports[0].source}
        if len(setup.final_seeds) > 1:
            out |= {"test_accuracy_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                    "seeds": list(setup.final_seeds)}
    return out
