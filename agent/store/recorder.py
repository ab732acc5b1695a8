"""Where a search writes what happens: the ``Recorder`` protocol, and its in-memory implementation.

Two implementations, each complete, so no caller asks which one it has: the DuckDB history
(``agent.store.history.History``: persisted, shared by processes) and ``MemoryRecorder`` (lists
in this process: ``bench/`` runs exactly the loop that ``agent search`` runs, without the cost of
a database write per candidate). A run recorded in either can be resumed from it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from agent.records import ForecastRecord, LLMCall, LLMOutcome, Run, RunStatus
from evaluator.errors import NotFoundError
from evaluator.records import Candidate, Evaluation, Purpose, Status


class Recorder(Protocol):
    """What a search writes and reads back. Runs: ``create_run`` .. ``finish_run`` (and
    ``claim_run`` to continue one); candidates and their evaluations; LLM calls, insights and
    forecasts; the reads a search needs to prompt, to report and to resume."""

    home: Path | None  # where the records persist (the AGENT_HOME); None: this process only

    # -- runs ----------------------------------------------------------------------------
    def create_run(self, run: Run) -> None: ...

    def resolve_run_id(self, run: str) -> str:
        """A run id, or 'latest' for the newest run; NotFoundError when there is none."""

    def get_run(self, run_id: str) -> dict[str, Any]:
        """The run's row: task, space, proposer, seed, budget, status, created, config, summary."""

    def claim_run(self, run_id: str, *, budget: int | None = None,
                  config_update: dict[str, Any] | None = None) -> dict[str, Any]:
        """Continue a stopped run in this process: candidates left running go back to queued.
        Returns ``{"resumes", "requeued", "previous_status"}``."""

    def finish_run(self, run_id: str, status: RunStatus, summary: dict[str, Any] | None) -> None: ...

    # -- candidates and evaluations --------------------------------------------------------
    def add_candidates(self, candidates: Sequence[Candidate], events: Sequence[dict[str, Any]] = ()) -> None: ...

    def set_status(self, candidate_ids: Sequence[str], status: Status, error: str | None = None) -> None: ...

    def add_evaluations(self, run_id: str, evaluations: Sequence[Evaluation], update_status: bool = True) -> None: ...

    def run_records(self, run_id: str) -> tuple[list[Candidate], list[Evaluation]]:
        """The run's candidates (in order) and evaluations (oldest first): what a resume rebuilds from."""

    def final_evaluations(self, candidate_id: str) -> list[Evaluation]:
        """A candidate's final (test split) evaluations, oldest first."""

    def count_events(self, run_id: str, kind: str) -> int: ...

    def checkpoint(self, label: str, keep: int) -> str | None:
        """Keep a copy of what is recorded so far, to restore should the store be damaged (the
        newest ``keep`` copies stay); where it went, or None when nothing was copied."""

    def directions(self, run_id: str) -> list[str]:
        """The directions given to the run (in chat sessions), oldest first."""

    # -- the LLM's calls, insights, forecasts ------------------------------------------------
    def add_llm_calls(self, calls: Sequence[LLMCall]) -> None: ...

    def llm_totals(self, run_id: str) -> dict[str, Any]: ...

    def add_insights(self, run_id: str, reflection: str, texts: Sequence[str], *, after_evaluations: int,
                     call_id: str | None = None) -> None: ...

    def insights(self, run_id: str, *, latest: bool = True) -> list[dict[str, Any]]: ...

    def add_forecasts(self, forecasts: Sequence[ForecastRecord]) -> None: ...

    def prompt_history(self, run_id: str, *, best: int = 8, recent: int = 5, diverse: int = 5, failures: int = 5,
                       seed: int = 0) -> dict[str, list[dict[str, Any]]]: ...


class MemoryRecorder:
    """Keeps the records in lists; nothing is persisted. Reads answer as History's do."""

    home: Path | None = None

    def __init__(self) -> None:
        self.runs: dict[str, Run] = {}
        self.candidates: dict[str, Candidate] = {}
        self.evaluations: list[Evaluation] = []
        self.events: list[dict[str, Any]] = []
        self.llm: list[LLMCall] = []
        self.insight_rows: list[dict[str, Any]] = []
        self.forecast_rows: list[ForecastRecord] = []

    # -- runs ----------------------------------------------------------------------------

    def create_run(self, run: Run) -> None:
        self.runs[run.run_id] = run
        self._event(run.run_id, "run_started")

    def resolve_run_id(self, run: str) -> str:
        if run == "latest" and self.runs:
            return max(self.runs.values(), key=lambda r: (r.created, r.run_id)).run_id
        if run in self.runs:
            return run
        raise NotFoundError(f"no run {run!r} in this recorder" if run != "latest" else "no runs yet in this recorder",
                            hint="resume a run recorded by this MemoryRecorder, or use the History")

    def get_run(self, run_id: str) -> dict[str, Any]:
        run = self.runs[self.resolve_run_id(run_id)]
        return run.model_dump() | {"status": run.status.value}

    def claim_run(self, run_id: str, *, budget: int | None = None,
                  config_update: dict[str, Any] | None = None) -> dict[str, Any]:
        run = self.runs[self.resolve_run_id(run_id)]
        requeued = sorted(c.candidate_id for c in self._of(run.run_id) if c.status is Status.RUNNING)
        for cid in requeued:
            self.candidates[cid].status = Status.QUEUED
        previous = run.status.value
        self.runs[run.run_id] = run.model_copy(update={
            "status": RunStatus.RUNNING, "finished": None, "config": run.config | (config_update or {}),
            "budget": budget if budget is not None else run.budget})
        resumes = self.count_events(run.run_id, "run_resumed")
        self._event(run.run_id, "run_resumed", {"previous_status": previous, "requeued": requeued})
        return {"resumes": resumes + 1, "requeued": requeued, "previous_status": previous}

    def finish_run(self, run_id: str, status: RunStatus, summary: dict[str, Any] | None) -> None:
        self.runs[run_id] = self.runs[run_id].model_copy(update={"status": status, "summary": summary})
        requeued = []
        for c in self._of(run_id):  # as History: a stop in mid-evaluation re-queues
            if c.status is Status.RUNNING:
                c.status = Status.QUEUED
                requeued.append(c.candidate_id)
        self._event(run_id, "run_finished", {"status": status.value} | ({"requeued": requeued} if requeued else {}))

    # -- candidates and evaluations --------------------------------------------------------

    def add_candidates(self, candidates: Sequence[Candidate], events: Sequence[dict[str, Any]] = ()) -> None:
        for c in candidates:
            self.candidates[c.candidate_id] = c.model_copy()
        self.events.extend(events)

    def set_status(self, candidate_ids: Sequence[str], status: Status, error: str | None = None) -> None:
        for cid in candidate_ids:
            self.candidates[cid].status = status
            if error is not None:
                self.candidates[cid].error = error

    def add_evaluations(self, run_id: str, evaluations: Sequence[Evaluation], update_status: bool = True) -> None:
        self.evaluations.extend(evaluations)
        if update_status:
            for ev in evaluations:
                self.candidates[ev.candidate_id].status = ev.status

    def run_records(self, run_id: str) -> tuple[list[Candidate], list[Evaluation]]:
        candidates = sorted((c.model_copy() for c in self._of(run_id)), key=lambda c: c.seq)
        ids = {c.candidate_id for c in candidates}
        return candidates, [e.model_copy() for e in self.evaluations if e.candidate_id in ids]

    def final_evaluations(self, candidate_id: str) -> list[Evaluation]:
        return [e for e in self.evaluations if e.candidate_id == candidate_id and e.purpose is Purpose.FINAL]

    def count_events(self, run_id: str, kind: str) -> int:
        return sum(e["run_id"] == run_id and e["kind"] == kind for e in self.events)

    def directions(self, run_id: str) -> list[str]:
        return [e["payload"]["text"] for e in self.events if e["run_id"] == run_id and e["kind"] == "direction"]

    def checkpoint(self, label: str, keep: int) -> str | None:
        """None: the records live in this process, with no file that could be damaged."""
        return None

    # -- the LLM's calls, insights, forecasts ------------------------------------------------

    def add_llm_calls(self, calls: Sequence[LLMCall]) -> None:
        self.llm.extend(calls)

    def llm_totals(self, run_id: str) -> dict[str, Any]:
        """As History.llm_totals."""
        calls = [c for c in self.llm if c.run_id == run_id]
        last: dict[str, LLMCall] = {}
        for c in calls:
            if c.proposal is not None and (c.proposal not in last or c.attempt >= last[c.proposal].attempt):
                last[c.proposal] = c
        replies = [c for c in calls if c.proposal is not None and c.outcome is not LLMOutcome.FAILED]
        parsed = [c for c in replies if c.outcome in (LLMOutcome.VALID, LLMOutcome.SPEC_INVALID)]
        priced = [c.cost for c in calls if c.cost is not None]
        return {"calls": len(calls), "schema_valid_rate": len(parsed) / len(replies) if replies else None,
                "valid_rate": (sum(c.outcome is LLMOutcome.VALID for c in last.values()) / len(last)) if last else None,
                "repairs": sum(c.attempt > 0 for c in calls), "tokens_in": sum(c.tokens_in for c in calls),
                "tokens_out": sum(c.tokens_out for c in calls), "seconds": round(sum(c.seconds for c in calls), 3),
                "cost": round(sum(priced), 6) if priced else None}

    def add_insights(self, run_id: str, reflection: str, texts: Sequence[str], *, after_evaluations: int,
                     call_id: str | None = None) -> None:
        self.insight_rows += [{"run_id": run_id, "reflection": reflection, "position": i,
                               "after_evaluations": after_evaluations, "text": t, "call_id": call_id}
                              for i, t in enumerate(texts)]

    def insights(self, run_id: str, *, latest: bool = True) -> list[dict[str, Any]]:
        """As History.insights."""
        rows = [r for r in self.insight_rows if r["run_id"] == run_id]
        if latest and rows:
            rows = [r for r in rows if r["reflection"] == rows[-1]["reflection"]]
        return [{k: v for k, v in r.items() if k != "run_id"} for r in rows]

    def add_forecasts(self, forecasts: Sequence[ForecastRecord]) -> None:
        self.forecast_rows.extend(forecasts)

    def prompt_history(self, run_id: str, *, best: int = 8, recent: int = 5, diverse: int = 5, failures: int = 5,
                       seed: int = 0) -> dict[str, list[dict[str, Any]]]:
        """As History.prompt_history (the diverse sample is seeded, not the same rows)."""
        vals: dict[str, float | None] = {}
        for ev in self.evaluations:
            if ev.purpose is Purpose.SEARCH:
                vals[ev.candidate_id] = ev.val_accuracy
        rows = [{"candidate_id": c.candidate_id, "seq": c.seq, "status": c.status.value, "spec": c.spec, "error": c.error,
                 "val_accuracy": vals.get(c.candidate_id), "measurements": dict(c.measurements)}
                for c in self._of(run_id)]
        ok = sorted((r for r in rows if r["status"] == "ok"), key=lambda r: (-(r["val_accuracy"] or 0), r["seq"]))
        done = sorted((r for r in rows if r["status"] not in ("queued", "running")), key=lambda r: -r["seq"])
        best_ids = {r["candidate_id"] for r in ok[:best]}
        recent_rows = [r for r in done if r["candidate_id"] not in best_ids][:recent]
        rest = [r for r in ok[best:] if r not in recent_rows]
        return {"best": ok[:best], "recent": recent_rows,
                "diverse": random.Random(seed).sample(rest, min(diverse, len(rest))),
                "failures": [r for r in done if r["status"] in ("failed", "timeout", "invalid")][:failures]}

    # -- helpers -------------------------------------------------------------------------

    def _of(self, run_id: str) -> list[Candidate]:
        return [c for c in self.candidates.values() if c.run_id == run_id]

    def _event(self, run_id: str, kind: str, payload: dict[str, Any] | None = None) -> None:
        self.events.append({"run_id": run_id, "kind": kind, "payload": payload or {}})
