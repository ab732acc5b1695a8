"""What the history knows about a candidate that an export needs.

``gather(history, candidate_id)`` reads the candidate, its run and its evaluations once and
returns :class:`Facts`: the task's input shape and classes, the validation and final test
results, the parameter count the evaluator recorded, and the final runs with their kept
weights. It also decides whether the candidate can be exported at all (``check_exportable``).
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from agent.store import History
from evaluator.errors import UserInputError
from evaluator.tasks import (LOOKUP_PREFIX, CURVES_INPUT_SHAPE, CURVES_NUM_CLASSES, is_curves_task, is_training_task,
                             tabular_task_shape)

# Evaluated: the evaluator built this network (and trained it, or looked it up). A candidate
# stopped or pruned by the search's budget rules is a healthy network trained for fewer
# epochs; a failed or timed-out one is still a valid architecture whose training went wrong
# with this recipe. They export, with a warning that says so.
EXPORTABLE = ("ok", "failed", "timeout", "stopped_early", "pruned")
# What a run or candidate id may look like before it names a folder or a file (archagent writes
# 20261207-051500-a1b2c3 and 20261207-051500-a1b2c3-c0004): no separator, no "..", no leading dot.
SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def check_safe_id(kind: str, value: object) -> str:
    """``value`` if it can name a folder or a file under the home; else UserInputError. The ids come
    from the history, which another program (or a copied file) may have written."""
    if not isinstance(value, str) or SAFE_ID.fullmatch(value) is None or ".." in value:
        raise UserInputError(f"the history holds the {kind} id {value!r}, which archagent does not write and will "
                             "not use as a folder or file name",
                             hint="ids are letters, digits, '_', '.' and '-' (no '..'); this history was changed "
                                  "outside archagent: export another candidate, or check the file")
    return value



@dataclass(frozen=True)
class FinalRun:
    """One ok final evaluation: a retraining from scratch measured on the test split (or a table lookup)."""

    seed: int | None
    test_accuracy: float
    weights: Path | None  # the kept state_dict, where the pool recorded one and it is still there
    weights_note: str | None  # why there are no weights to use, when there are none
    created: datetime | None


@dataclass
class Facts:
    candidate_id: str
    run_id: str
    status: str
    error: str | None
    space: str
    spec: dict[str, Any]
    proposer: str
    task: str
    task_kind: str  # "train", "tabular" or "curves"
    input_shape: tuple[int, ...]
    num_classes: int
    data: str  # the data set, in words
    epochs: int | None  # training tasks: the schedule's length (search and final retraining)
    config: dict[str, Any]
    run_created: datetime | None
    home: Path
    val_accuracy: float | None = None
    val_epochs: float | None = None
    val_source: str | None = None
    recorded_params: int | None = None  # what the worker counted on the network it built
    finals: list[FinalRun] = field(default_factory=list)
    final_source: str | None = None
    final_errors: list[str] = field(default_factory=list)

    @property
    def test_accuracy(self) -> float | None:
        return statistics.fmean(f.test_accuracy for f in self.finals) if self.finals else None

    @property
    def test_accuracy_std(self) -> float | None:
        accs = [f.test_accuracy for f in self.finals]
        return statistics.stdev(accs) if len(accs) > 1 else None

    @property
    def seeds(self) -> list[int]:
        return [f.seed for f in self.finals if f.seed is not None]


def check_exportable(candidate_id: str, status: str, error: str | None) -> None:
    """Only evaluated candidates export: an invalid spec never became a network, and a queued
    or running one has no results yet."""
    if status in EXPORTABLE:
        return
    if status == "invalid":
        why = f": {error.splitlines()[0][:300]}" if error else ""
        raise UserInputError(
            f"candidate {candidate_id} is invalid (rejected before evaluation{why}); only evaluated candidates can "
            "be exported, because an invalid spec never became a network",
            hint="export an evaluated candidate: `agent history --run RUN` lists each candidate's status")
    raise UserInputError(
        f"candidate {candidate_id} is {status}: it has not been evaluated yet, so there is nothing to report with it",
        hint="wait for its run to finish (or resume it), then export it; `agent history --run RUN` shows statuses")


def gather(history: History, candidate_id: str) -> Facts:
    """Everything an export needs from the history (NotFoundError for an unknown id)."""
    row = history.get_candidate(candidate_id)
    check_safe_id("candidate", row["candidate_id"])
    check_safe_id("run", row["run_id"])
    check_exportable(candidate_id, row["status"], row["error"])
    run = history.get_run(row["run_id"])
    config = run.get("config") or {}
    task = run["task"]
    input_shape, num_classes, data, kind = _task_shape(task, config)
    epochs = config.get("epochs") if kind == "train" else None
    facts = Facts(candidate_id=row["candidate_id"], run_id=row["run_id"], status=row["status"], error=row["error"],
                  space=row["space"], spec=row["spec"], proposer=row["proposer"], task=task, task_kind=kind,
                  input_shape=input_shape, num_classes=num_classes, data=data,
                  epochs=int(epochs) if epochs is not None else None, config=config, run_created=run.get("created"),
                  home=history.home)
    evaluations = row["evaluations"]
    search = [e for e in evaluations if e["purpose"] == "search"]
    ok_search = [e for e in search if e["status"] == "ok"]
    if ok_search:
        latest = ok_search[-1]
        facts.val_accuracy, facts.val_epochs, facts.val_source = latest["val_accuracy"], latest["fidelity"], latest["source"]
    params = _recorded_params(search) if search else None
    if params is None:
        params = _recorded_params(evaluations)
    facts.recorded_params = params if params is not None else (row["measurements"] or {}).get("params")
    for e in evaluations:
        if e["purpose"] != "final":
            continue
        if e["status"] != "ok" or e["test_accuracy"] is None:
            facts.final_errors.append(f"{e['status']}: {(e['error'] or 'no test accuracy').splitlines()[0][:200]}")
            continue
        metrics = e["metrics"] or {}
        weights, note = _kept_weights(metrics, history.home, row["run_id"])
        seed = metrics.get("seed")
        facts.finals.append(FinalRun(seed=int(seed) if seed is not None else None, test_accuracy=e["test_accuracy"],
                                     weights=weights, weights_note=note, created=e["created"]))
        facts.final_source = e["source"]
    return facts


def _recorded_params(evaluations: list[dict[str, Any]]) -> int | None:
    """The parameter count the worker reported for the network it built (the latest one)."""
    for e in reversed(evaluations):
        value = (e["metrics"] or {}).get("params")
        if value is not None:
            return int(value)
    return None


def _task_shape(task: str, config: dict[str, Any]) -> tuple[tuple[int, ...], int, str, str]:
    """(input_shape, num_classes, data in words, kind) of the run's task."""
    if is_training_task(task):
        if not config.get("input_shape") or not config.get("num_classes"):
            raise UserInputError(f"the run of task {task} recorded no input shape or number of classes",
                                 hint="this history was written by an older archagent; evaluate the candidate again "
                                      "(`agent eval --task ... --spec ...`) and export the new one")
        return tuple(int(d) for d in config["input_shape"]), int(config["num_classes"]), config.get("data") or task, "train"
    if task.startswith(LOOKUP_PREFIX):
        raise UserInputError(f"the candidates of run task {task} were looked up in a table, never built: there is no "
                             "network to export",
                             hint="train the candidate through the space file's builder (agent eval --space-file FILE "
                                  "--task TASK --spec '...' --final), then export that one")
    if is_curves_task(task):
        return CURVES_INPUT_SHAPE, CURVES_NUM_CLASSES, f"recorded NAS-Bench-201 learning curves ({task})", "curves"
    shape, classes, about = tabular_task_shape(task)
    return shape, classes, f"NAS-Bench-201 on {about} (benchmark tables)", "tabular"


def _kept_weights(metrics: dict[str, Any], home: Path, run_id: str) -> tuple[Path | None, str | None]:
    """The weights file a final evaluation recorded, found where it was kept or, when the home
    has moved since, under this home's weights folder."""
    recorded = metrics.get("weights")
    if not recorded:
        return None, metrics.get("weights_error") or "no weights were kept (the run predates kept weights)"
    path = Path(recorded)
    if path.is_file():
        return path, None
    moved = home / "weights" / run_id / path.name
    if moved.is_file():
        return moved, None
    return None, f"the kept weights {path} are gone (not there, nor in {moved.parent})"
