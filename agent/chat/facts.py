"""What a chat session knows about its run, read from the history each time it is asked:
the numbers the assistant cites come from DuckDB, never from the model's memory."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.store import History

TOP = 5


def _acc(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


@dataclass
class RunFacts:
    run: dict[str, Any]
    candidates: list[dict[str, Any]]  # in order, with val_accuracy / test_accuracy
    directions: list[str]

    @classmethod
    def read(cls, history: History, run_id: str) -> "RunFacts":
        return cls(run=history.get_run(run_id), candidates=history.run_candidates(run_id),
                   directions=history.directions(run_id))

    @property
    def ranked(self) -> list[dict[str, Any]]:
        ok = [c for c in self.candidates if c["status"] == "ok" and c["val_accuracy"] is not None]
        return sorted(ok, key=lambda c: (-c["val_accuracy"], c["seq"]))

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self.candidates:
            out[c["status"]] = out.get(c["status"], 0) + 1
        return out

    def find(self, ref: str) -> dict[str, Any] | None:
        """A candidate by its full id or its short form (c0004)."""
        ref = ref.strip()
        return next((c for c in self.candidates if c["candidate_id"] == ref or c["candidate_id"].endswith("-" + ref)), None)

    # -- lines the assistant cites ------------------------------------------------------

    def best_line(self) -> str:
        ranked = self.ranked
        if not ranked:
            return "No candidate of this run has finished ok yet, so there is no best one."
        return "Best by validation accuracy: " + self.candidate_line(ranked[0])

    def candidate_line(self, c: dict[str, Any]) -> str:
        text = f"{c['candidate_id']} ({c['status']}), validation accuracy {_acc(c['val_accuracy'])}"
        if c.get("test_accuracy") is not None:
            text += f", test accuracy {_acc(c['test_accuracy'])} (mean of {c['final_runs']} final run(s))"
        params = (c.get("measurements") or {}).get("params")
        if params:
            text += f", {params:,} params"
        if c.get("error"):
            text += f"; error: {c['error'][:200]}"
        return text

    def status_line(self) -> str:
        r = self.run
        counts = ", ".join(f"{n} {s}" for s, n in sorted(self.counts().items())) or "no candidates yet"
        return (f"Run {r['run_id']} ({r['task']}, space {r['space']}, proposer {r['proposer']}) is {r['status']}: "
                f"{r['evaluations']} of {r['budget']} evaluations ({counts}).")

    def top_lines(self, k: int = TOP) -> list[str]:
        return [f"{i}. {self.candidate_line(c)}" for i, c in enumerate(self.ranked[:k], start=1)]

    def prompt_block(self) -> str:
        """The facts the model answers from."""
        lines = [self.status_line(), "Top candidates by validation accuracy:", *(self.top_lines() or ["(none yet)"])]
        failed = [c for c in self.candidates if c["status"] in ("failed", "timeout")][-3:]
        if failed:
            lines += ["Recent failures:", *[self.candidate_line(c) for c in failed]]
        if self.directions:
            lines += ["The user's directions so far:", *[f"- {d}" for d in self.directions]]
        return "\n".join(lines)
