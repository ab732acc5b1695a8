"""Live progress of a search on stderr: a rich bar on a terminal, a log line otherwise.

On a terminal, each candidate in training has its own line (epoch, validation accuracy) under
the search's bar. Elsewhere (a log file, CI), each evaluation that took a second or more gets a
line, and quick tabular lookups one line per tenth of the budget.
"""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from agent.engine.state import UNBOUNDED_BUDGET
from evaluator.pools.base import PoolEvent
from agent.records import Run
from evaluator.records import Candidate, Evaluation


class SearchProgress:
    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.interactive = self.console.is_terminal
        self._progress: Progress | None = None
        self._task: Any = None
        self._budget = 0
        self._last_logged = 0
        self._jobs: dict[str, Any] = {}  # candidate id -> its line on a terminal

    def start(self, run: Run, warnings: list[str]) -> None:
        bounded = run.budget < UNBOUNDED_BUDGET
        self._budget = run.budget if bounded else 0
        self.console.print(f"[bold]run {run.run_id}[/]: {run.task}, proposer {run.proposer}, "
                           + (f"budget {run.budget} evaluations" if bounded else "no evaluation limit")
                           + f", seed {run.seed}", highlight=False)
        ray = (run.config or {}).get("ray")
        if ray:
            where = "a private cluster on 127.0.0.1" if ray["address"] == "local" else f"the cluster at {ray['address']}"
            self.console.print(f"training on Ray: {where}, {ray['nodes']} node(s), {ray['workers']} candidates at once, "
                               f"each {ray['per_candidate']}", highlight=False, markup=False)
        for w in warnings:
            self.console.print(f"[yellow]warning:[/] {w}", highlight=False)
        if self.interactive:
            self._progress = Progress(
                TextColumn("[bold blue]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("{task.fields[best]}"), console=self.console, transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task("searching", total=run.budget if bounded else None, best="")

    def result(self, candidate: Candidate, evaluation: Evaluation, state: dict[str, Any]) -> None:
        done = state["evaluations"]
        top = state["top"]
        best = f"best val {top[0]['val_accuracy']:.4f} ({top[0]['candidate_id']})" if top else ""
        invalid = state.get("counts", {}).get("invalid", 0)
        if invalid:
            best += f"; {invalid} rejected before training"
        if self._progress is not None:
            self._progress.update(self._task, completed=done, best=best)
        elif evaluation.wall_seconds >= 1.0:  # a training: one line each
            val = f"val {evaluation.val_accuracy:.4f}" if evaluation.val_accuracy is not None else evaluation.status.value
            self.console.print(f"{done}{self._of} {candidate.candidate_id}: {val} "
                               f"({evaluation.fidelity:g} epochs, {evaluation.wall_seconds:.1f} s)  {best}", highlight=False)
        elif done - self._last_logged >= max(1, self._budget // 10 if self._budget else 10) or done == self._budget:
            self._last_logged = done
            self.console.print(f"{done}{self._of} evaluations  {best}", highlight=False)

    @property
    def _of(self) -> str:
        return f"/{self._budget}" if self._budget else ""

    def event(self, event: PoolEvent) -> None:
        """A pool event: a training started, finished an epoch, or finished."""
        d = event.data
        purpose = d.get("purpose")
        label = event.candidate_id.rsplit("-", 1)[-1] + (f" {purpose}, seed {d.get('seed')}"
                                                         if purpose in ("final", "recheck") else "")
        if event.kind == "lost":  # a Ray worker died under the job: say so whether or not bars are shown
            task = self._jobs.pop(event.candidate_id + str(d.get("seed")), None)
            if task is not None and self._progress is not None:
                self._progress.remove_task(task)
            then = "queued again" if d.get("retrying") else "no retries left: failed"
            self.console.print(f"{label}: {d.get('error', 'worker lost')} (attempt {d.get('attempt')}); {then}",
                               highlight=False, markup=False)
            return
        if self._progress is None:
            if event.kind == "started" and purpose == "final":
                self.console.print(f"final report: retraining {event.candidate_id} (seed {d.get('seed')}) on the test split",
                                   highlight=False)
            elif event.kind == "started" and purpose == "recheck":
                self.console.print(f"recheck: training {event.candidate_id} again with seed {d.get('seed')}",
                                   highlight=False)
            return
        if event.kind == "started" and d.get("epochs"):
            start = d.get("from_epoch") or 0
            self._jobs[event.candidate_id + str(d.get("seed"))] = self._progress.add_task(
                "train", total=d["epochs"], completed=start,
                best=f"  {label}: " + (f"continuing from epoch {start}" if start else "starting"))
        elif event.kind == "progress":
            task = self._jobs.get(event.candidate_id + str(d.get("seed")))
            if task is not None:
                self._progress.update(task, completed=d["epoch"],
                                      best=f"  {label}: epoch {d['epoch']}/{d['epochs']}, val {d['val_accuracy']:.4f}")
        elif event.kind == "finished":
            seed = event.evaluation.metrics.get("seed") if event.evaluation is not None else None
            task = self._jobs.pop(event.candidate_id + str(seed), None)
            if task is not None:
                self._progress.remove_task(task)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    @staticmethod
    def for_stderr() -> "SearchProgress":
        if sys.stderr.isatty():
            return SearchProgress(Console(stderr=True))
        return SearchProgress(Console(stderr=True, force_terminal=False, soft_wrap=True))  # a log: one line each
