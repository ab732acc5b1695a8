"""Where a search writes what happens: the DuckDB history, or memory (benchmarks, tests).

Both implement the same methods, so ``bench/`` runs exactly the loop that ``agent search``
runs, without the cost of a database write per candidate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from evaluator.records import Candidate, Evaluation, Run, RunStatus, Status


class Recorder(Protocol):
    def create_run(self, run: Run) -> None: ...

    def add_candidates(self, candidates: Sequence[Candidate], events: Sequence[dict[str, Any]] = ()) -> None: ...

    def set_status(self, candidate_ids: Sequence[str], status: Status) -> None: ...

    def add_evaluations(self, run_id: str, evaluations: Sequence[Evaluation], update_status: bool = True) -> None: ...

    def finish_run(self, run_id: str, status: RunStatus, summary: dict[str, Any] | None) -> None: ...


class MemoryRecorder:
    """Keeps the records in lists; nothing is persisted."""

    def __init__(self) -> None:
        self.runs: dict[str, Run] = {}
        self.candidates: dict[str, Candidate] = {}
        self.evaluations: list[Evaluation] = []
        self.events: list[dict[str, Any]] = []

    def create_run(self, run: Run) -> None:
        self.runs[run.run_id] = run

    def add_candidates(self, candidates: Sequence[Candidate], events: Sequence[dict[str, Any]] = ()) -> None:
        for c in candidates:
            self.candidates[c.candidate_id] = c.model_copy()
        self.events.extend(events)

    def set_status(self, candidate_ids: Sequence[str], status: Status) -> None:
        for cid in candidate_ids:
            self.candidates[cid].status = status

    def add_evaluations(self, run_id: str, evaluations: Sequence[Evaluation], update_status: bool = True) -> None:
        self.evaluations.extend(evaluations)
        if update_status:
            for ev in evaluations:
                self.candidates[ev.candidate_id].status = ev.status

    def finish_run(self, run_id: str, status: RunStatus, summary: dict[str, Any] | None) -> None:
        self.runs[run_id] = self.runs[run_id].model_copy(update={"status": status, "summary": summary})
        for c in self.candidates.values():  # as History: a stop in mid-evaluation re-queues
            if c.run_id == run_id and c.status is Status.RUNNING:
                c.status = Status.QUEUED
