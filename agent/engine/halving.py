"""A run's successive halving (``--early-stop asha|both``): the search graph's side of
evaluator.early_stop.halving.SuccessiveHalving.

A new candidate's job trains to the first rung and leaves a checkpoint; its ``ok`` result
at a rung is not final: the candidate waits here (status ``queued`` in the history) until the
scheduler promotes it, and its next job continues from the checkpoint to the next rung. A
candidate that reaches the end of the schedule finishes ``ok`` as any other. When the search
closes, the ones still waiting become final: ``pruned`` at their rung, with the rung's
validation accuracy in their metrics and error text. Every rung arrival, promotion and prune
is an event in the history (``rung``), so the schedule can be replayed from it.
"""

from __future__ import annotations

from typing import Any

from evaluator.pools.base import EvaluationPool, Job
from evaluator.records import Candidate, Evaluation, Purpose, Status
from evaluator.early_stop.halving import RungDecision, SuccessiveHalving


class HalvingMonitor:
    def __init__(self, run_id: str, pool: EvaluationPool, scheduler: SuccessiveHalving) -> None:
        self.run_id, self.pool, self.scheduler = run_id, pool, scheduler
        self.waiting: dict[str, tuple[Candidate, Evaluation]] = {}  # candidate -> its rung result
        self.pruned = 0
        self._events: list[dict[str, Any]] = []

    def first_job(self, candidate: Candidate) -> Job:
        return Job(candidate_id=candidate.candidate_id, spec=candidate.spec, fidelity=self.scheduler.first_epochs,
                   checkpoint=True)

    def promotable(self, closing: bool) -> int:
        """How many waiting candidates free slots would go to now."""
        return len(self.scheduler.promotions(len(self.waiting), closing=closing, commit=False))

    def promote(self, slots: int, closing: bool) -> list[tuple[Candidate, Job]]:
        """Jobs that continue waiting candidates, up to ``slots``."""
        out = []
        for d in self.scheduler.promotions(slots, closing=closing):
            candidate, _ = self.waiting.pop(d.candidate_id)
            self._event(d, closing)
            out.append((candidate, Job(candidate_id=candidate.candidate_id, spec=candidate.spec, fidelity=d.next_epochs,
                                       resume=True, checkpoint=d.next_epochs < self.scheduler.max_epochs)))
        return out

    def arrived(self, candidate: Candidate, evaluation: Evaluation) -> bool:
        """True when ``evaluation`` is a rung result: the candidate now waits here."""
        at_rung = (evaluation.purpose is Purpose.SEARCH and evaluation.status is Status.OK
                   and evaluation.val_accuracy is not None and self.scheduler.rung_of(evaluation.fidelity or 0) is not None)
        if not at_rung:
            self.scheduler.forget(candidate.candidate_id)
            return False
        decision = self.scheduler.reached(candidate.candidate_id, evaluation.fidelity, evaluation.val_accuracy)
        self.waiting[candidate.candidate_id] = (candidate, evaluation)
        self._event(decision, False)
        return True

    def prune_waiting(self, why: str) -> list[tuple[Candidate, Evaluation]]:
        """Make every waiting candidate final: ``pruned`` at its rung."""
        out = []
        for d in self.scheduler.prune_waiting():
            candidate, ev = self.waiting.pop(d.candidate_id)
            self._event(d, True)
            self.pool.discard(d.candidate_id)
            error = (f"pruned by successive halving at {d.epochs} of {self.scheduler.max_epochs} epochs: validation "
                     f"accuracy {d.value:.4f} ranked {d.rank} of {d.of} at that rung; {why}")
            out.append((candidate, ev.model_copy(update={
                "status": Status.PRUNED, "val_accuracy": None, "error": error,
                "metrics": {**ev.metrics, "stopped_by": "asha", "rung_epochs": d.epochs, "rung_val_accuracy": d.value,
                            "rung_rank": d.rank, "rung_of": d.of}})))
        self.pruned += len(out)
        return out

    def drain_events(self) -> list[dict[str, Any]]:
        out, self._events = self._events, []
        return out

    def report(self) -> dict[str, Any]:
        return {"mode": "asha", **self.scheduler.report(), "pruned": self.pruned}

    def _event(self, d: RungDecision, closing: bool) -> None:
        self._events.append({"run_id": self.run_id, "candidate_id": d.candidate_id, "kind": "rung",
                             "payload": {"rung_epochs": d.epochs, "val_accuracy": d.value, "rank": d.rank, "of": d.of,
                                         "action": d.action, "next_epochs": d.next_epochs, "closing": closing}})
