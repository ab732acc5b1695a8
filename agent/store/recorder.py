"""Where a search writes what happens: the DuckDB history, or memory (benchmarks, tests).

Both implement the same methods, so ``bench/`` runs exactly the loop that ``agent search``
runs, without the cost of a database write per candidate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from evaluator.records import Candidate, Evaluation, ForecastRecord, LLMCall, LLMOutcome, Run, RunStatus, Status


class Recorder(Protocol):
    def create_run(self, run: Run) -> None: ...

    def add_candidates(self, candidates: Sequence[Candidate], events: Sequence[dict[str, Any]] = ()) -> None: ...

    def set_status(self, candidate_ids: Sequence[str], status: Status, error: str | None = None) -> None: ...

    def add_evaluations(self, run_id: str, evaluations: Sequence[Evaluation], update_status: bool = True) -> None: ...

    def finish_run(self, run_id: str, status: RunStatus, summary: dict[str, Any] | None) -> None: ...

    def add_llm_calls(self, calls: Sequence[LLMCall]) -> None: ...

    def llm_totals(self, run_id: str) -> dict[str, Any]: ...

    def add_insights(self, run_id: str, reflection: str, texts: Sequence[str], *, after_evaluations: int,
                     call_id: str | None = None) -> None: ...

    def insights(self, run_id: str, *, latest: bool = True) -> list[dict[str, Any]]: ...

    def add_forecasts(self, forecasts: Sequence[ForecastRecord]) -> None: ...

    def prompt_history(self, run_id: str, *, best: int = 8, recent: int = 5, diverse: int = 5, failures: int = 5,
                       seed: int = 0) -> dict[str, list[dict[str, Any]]]: ...


class MemoryRecorder:
    """Keeps the records in lists; nothing is persisted."""

    def __init__(self) -> None:
        self.runs: dict[str, Run] = {}
        self.candidates: dict[str, Candidate] = {}
        self.evaluations: list[Evaluation] = []
        self.events: list[dict[str, Any]] = []
        self.llm: list[LLMCall] = []
        self.insight_rows: list[dict[str, Any]] = []
        self.forecast_rows: list[ForecastRecord] = []

    def create_run(self, run: Run) -> None:
        self.runs[run.run_id] = run

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

    def finish_run(self, run_id: str, status: RunStatus, summary: dict[str, Any] | None) -> None:
        self.runs[run_id] = self.runs[run_id].model_copy(update={"status": status, "summary": summary})
        for c in self.candidates.values():  # as History: a stop in mid-evaluation re-queues
            if c.run_id == run_id and c.status is Status.RUNNING:
                c.status = Status.QUEUED

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
        import random

        vals: dict[str, float | None] = {}
        for ev in self.evaluations:
            if ev.purpose.value == "search":
                vals[ev.candidate_id] = ev.val_accuracy
        rows = [{"candidate_id": c.candidate_id, "seq": c.seq, "status": c.status.value, "spec": c.spec, "error": c.error,
                 "val_accuracy": vals.get(c.candidate_id), "measurements": dict(c.measurements)}
                for c in self.candidates.values() if c.run_id == run_id]
        ok = sorted((r for r in rows if r["status"] == "ok"), key=lambda r: (-(r["val_accuracy"] or 0), r["seq"]))
        done = sorted((r for r in rows if r["status"] not in ("queued", "running")), key=lambda r: -r["seq"])
        best_ids = {r["candidate_id"] for r in ok[:best]}
        recent_rows = [r for r in done if r["candidate_id"] not in best_ids][:recent]
        rest = [r for r in ok[best:] if r not in recent_rows]
        return {"best": ok[:best], "recent": recent_rows,
                "diverse": random.Random(seed).sample(rest, min(diverse, len(rest))),
                "failures": [r for r in done if r["status"] in ("failed", "timeout", "invalid")][:failures]}
