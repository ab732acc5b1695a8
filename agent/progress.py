"""Live progress of a search on stderr: a rich bar on a terminal, a log line otherwise."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from evaluator.records import Candidate, Evaluation, Run


class SearchProgress:
    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.interactive = self.console.is_terminal
        self._progress: Progress | None = None
        self._task: Any = None
        self._budget = 0
        self._last_logged = 0

    def start(self, run: Run, warnings: list[str]) -> None:
        self._budget = run.budget
        self.console.print(f"[bold]run {run.run_id}[/]: {run.task}, proposer {run.proposer}, "
                           f"budget {run.budget} evaluations, seed {run.seed}", highlight=False)
        for w in warnings:
            self.console.print(f"[yellow]warning:[/] {w}", highlight=False)
        if self.interactive:
            self._progress = Progress(
                TextColumn("[bold blue]searching"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("{task.fields[best]}"), console=self.console, transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task("search", total=run.budget, best="")

    def result(self, candidate: Candidate, evaluation: Evaluation, state: dict[str, Any]) -> None:
        done = state["evaluations"]
        top = state["top"]
        best = f"best val {top[0]['val_accuracy']:.4f} ({top[0]['candidate_id']})" if top else ""
        if self._progress is not None:
            self._progress.update(self._task, completed=done, best=best)
        elif done - self._last_logged >= max(1, self._budget // 10) or done == self._budget:
            self._last_logged = done
            self.console.print(f"{done}/{self._budget} evaluations  {best}", highlight=False)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    @staticmethod
    def for_stderr() -> "SearchProgress":
        return SearchProgress(Console(stderr=True, force_terminal=None if sys.stderr.isatty() else False))
